/**
 * How far a file being written has got, for a reader that follows the
 * writer (see formats/archive/growing-archive-file.ts): the writer reports
 * each batch of bytes once it is in the file, then that the file is
 * complete or that the write failed; the reader waits for either.
 */
export class WriteProgress {
  /** Bytes in the file so far. */
  private bytes = 0;
  private complete = false;
  private failure: unknown;
  private wake: (() => void)[] = [];

  get written(): number {
    return this.bytes;
  }

  /** Whether the writer is done: no byte will follow `written`. */
  get done(): boolean {
    return this.complete;
  }

  /** Why the write failed, once it has; the reader stops with it. */
  get error(): unknown {
    return this.failure;
  }

  get failed(): boolean {
    return this.failure !== undefined;
  }

  /** `n` more bytes are in the file. */
  advance(n: number): void {
    this.bytes += n;
    this.notify();
  }

  finish(): void {
    this.complete = true;
    this.notify();
  }

  fail(e: unknown): void {
    this.failure = e ?? new Error("the write failed");
    this.notify();
  }

  /** Resolves at the writer's next report. */
  next(): Promise<void> {
    return new Promise((resolve) => this.wake.push(resolve));
  }

  private notify(): void {
    const waiting = this.wake;
    this.wake = [];
    for (const w of waiting) w();
  }
}
