import { readSync } from "node:fs";
import { A3sError } from "../../errors.js";

/** Bytes read around each header: archive readers jump from header to header, skipping file data. */
const WINDOW = 64 * 1024;

/**
 * Reads an archive's headers by position through one window buffer that is
 * reused from read to read, handing out copies of the bytes asked for, or
 * views of them to a caller that is done with them before its next read.
 *
 * Why one buffer: a fresh buffer's first writes cost a page fault per 4 KiB
 * (on this project's VM host, several microseconds each). With a new 64 KiB
 * buffer per window, the 1,065 window reads of the bench's 170 MB layer
 * (8.7k members) took 316 ms of the main thread, 0.3 ms each; the same
 * reads into one buffer took 17-22 ms. The copies handed out are the few
 * hundred bytes of a header, from Node's buffer pool.
 *
 * Reads are synchronous: a window is a few KiB from (usually) the page
 * cache, and a thread-pool round trip per window cost more than the read
 * itself (applying a 170 MB layer of 8.7k members took twice as long).
 */
export class HeaderWindow {
  private readonly buffer = Buffer.allocUnsafe(WINDOW);
  private start = 0;
  private filled = 0;

  constructor(private readonly label: string) {}

  /** A copy of the `length` bytes at `position` of `fd`, which has `end` bytes (the caller checked they are there). */
  read(fd: number, position: number, length: number, end: number): Buffer {
    if (length > WINDOW) return this.readInto(fd, Buffer.allocUnsafe(length), position, length);
    return Buffer.from(this.view(fd, position, length, end));
  }

  /**
   * The same bytes as `read`, as a view of the window that the next `read`
   * or `view` may overwrite. Copying each header cost the scan of the
   * bench's layer (8.7k members) about 40 ms of the main thread by a CPU
   * profile, its garbage collection aside.
   */
  view(fd: number, position: number, length: number, end: number): Buffer {
    if (length > WINDOW) return this.readInto(fd, Buffer.allocUnsafe(length), position, length);
    if (position < this.start || position + length > this.start + this.filled) {
      const size = Math.max(length, Math.min(WINDOW, end - position));
      // Empty until the read is whole: a failed read leaves nothing stale to serve.
      this.filled = 0;
      this.readInto(fd, this.buffer, position, size);
      this.start = position;
      this.filled = size;
    }
    const from = position - this.start;
    return this.buffer.subarray(from, from + length);
  }

  private readInto(fd: number, buf: Buffer, position: number, size: number): Buffer {
    for (let done = 0; done < size; ) {
      const got = readSync(fd, buf, done, size - done, position + done);
      if (got === 0) throw new A3sError("ECORRUPT", `${this.label} shrank while it was read`, { subject: this.label });
      done += got;
    }
    return buf;
  }
}
