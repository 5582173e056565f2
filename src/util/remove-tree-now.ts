import { rmSync } from "node:fs";

/**
 * Removes a temporary tree synchronously, from a signal or exit handler.
 * The writes a build had queued in libuv's thread pool cannot be cancelled
 * and still land while this runs, so a directory emptied a moment ago can
 * gain an entry before its rmdir (ENOTEMPTY, seen under load). The removal
 * is started over, after a short wait, until those writes have landed (a few
 * tries; Node's own maxRetries only retries the rmdir, without removing what
 * arrived since). A failure left is not thrown: the handler must go on to
 * re-raise its signal or let the process exit.
 */
export function removeTreeNow(path: string): void {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let attempt = 1; ; attempt++) {
    try {
      rmSync(path, { recursive: true, force: true });
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOTEMPTY" || attempt === 10) return;
      Atomics.wait(pause, 0, 0, 20 * attempt);
    }
  }
}
