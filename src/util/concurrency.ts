/**
 * Bounds how many async tasks run at once. A finishing task hands its slot
 * straight to the next waiter, so a newcomer can never slip in between and
 * exceed the limit. The registry client bounds its blob downloads with it:
 * calls that arrive over time. A loop over a known list uses `forEachLimit`.
 */
export class Semaphore {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}

/**
 * Runs `fn` over `items` with at most `limit` calls in flight: `limit`
 * workers, each taking the next item when its call is done (no promise per
 * waiting item, which matters for ten thousand files). The first failure
 * stops new calls from starting; it is thrown once the calls already running
 * have settled, so nothing is left running behind the caller's back.
 */
export async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  const results = await Promise.allSettled(Array.from({ length: Math.min(Math.max(1, limit), items.length) }, worker));
  const rejected = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (rejected) throw rejected.reason;
}
