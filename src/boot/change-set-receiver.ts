import { createWriteStream, type WriteStream } from "node:fs";
import { finished } from "node:stream/promises";
import { join } from "node:path";
import { GuestChannel } from "./guest-channels.js";

/**
 * The host end of the changes port (docs/guest-protocol.md §8, "The change set"): what init
 * writes there goes to a file in the run directory as it arrives. A write
 * the disk has not taken yet holds the channel, so QEMU throttles the
 * guest instead of this process buffering the set in memory.
 */
export class ChangeSetReceiver {
  /** Bytes received so far. */
  bytes = 0;
  readonly path: string;
  private readonly out: WriteStream;
  private failure: Error | undefined;

  private constructor(
    work: string,
    private readonly onBytes: (n: number) => void,
  ) {
    this.path = join(work, "changes.tar");
    this.out = createWriteStream(this.path, { mode: 0o600 });
    this.out.on("error", (e) => (this.failure ??= e));
  }

  /** Listens on `socket` (QEMU connects to it); `onBytes` is told of every chunk. */
  static async listen(work: string, socket: string, onBytes: (n: number) => void): Promise<{ receiver: ChangeSetReceiver; channel: GuestChannel }> {
    const receiver = new ChangeSetReceiver(work, onBytes);
    const channel = await GuestChannel.listen(socket, (chunk) => receiver.take(chunk));
    return { receiver, channel };
  }

  private take(chunk: Buffer): Promise<void> | undefined {
    this.bytes += chunk.length;
    this.onBytes(chunk.length);
    if (this.failure || this.out.write(chunk)) return undefined;
    return new Promise((resolve) => {
      const done = (): void => {
        this.out.off("drain", done).off("error", done);
        resolve();
      };
      this.out.on("drain", done).on("error", done);
    });
  }

  /** Everything received is on disk (or the write's error is thrown). */
  async close(): Promise<void> {
    this.out.end();
    await finished(this.out).catch((e: Error) => (this.failure ??= e));
    if (this.failure) throw this.failure;
  }
}
