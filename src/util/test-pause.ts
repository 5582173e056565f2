/**
 * A named point where a build can be held for a test. With
 * A3S_TEST_PAUSE_AT=NAME in the environment, a build that reaches the point
 * NAME says "a3s-rootfs: paused at NAME" on stderr and waits there until its
 * AbortSignal fires, then goes on as a cancelled build would. The interrupt
 * tests use it to signal a real CLI build at a known step ("source": the
 * build's scratch directory exists and nothing has been read; "publish": an
 * output is complete under its temporary name and not yet renamed) instead
 * of guessing with timers. Unset, which is always the case outside those
 * tests, a point costs one environment lookup; without a signal it does
 * nothing, since nothing could ever end the wait.
 */
export async function pausePoint(name: string, signal: AbortSignal | undefined): Promise<void> {
  if (process.env.A3S_TEST_PAUSE_AT !== name || !signal) return;
  process.stderr.write(`a3s-rootfs: paused at ${name}\n`);
  // An unsettled promise does not keep Node running; the timer does, until the signal.
  const alive = setInterval(() => undefined, 60_000);
  try {
    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener("abort", () => resolve(), { once: true });
    });
  } finally {
    clearInterval(alive);
  }
  signal.throwIfAborted();
}
