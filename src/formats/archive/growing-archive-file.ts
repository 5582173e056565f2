import { closeSync, openSync } from "node:fs";
import { A3sError } from "../../errors.js";
import type { WriteProgress } from "../../util/write-progress.js";
import type { ArchiveSource } from "./archive-file.js";
import { HeaderWindow } from "./header-window.js";

/**
 * An archive read while another part of this process is still writing it
 * (a layer being decompressed into the content store), so its headers are
 * parsed as the bytes arrive instead of in a second pass once the write
 * ends. A read waits until the writer has put the bytes in the file; the
 * archive's end is where the writer stops. If the write fails, every read
 * fails with that error. Nothing read here is trusted more than the file
 * will be: the caller uses what was parsed only once the whole file's digest
 * has been checked.
 */
export class GrowingArchiveFile implements ArchiveSource {
  private readonly window: HeaderWindow;
  /** Opened at once: the writer may rename or unlink the path once it is done. */
  private fd: number | undefined;

  constructor(
    readonly path: string,
    private readonly progress: WriteProgress,
    readonly label: string,
  ) {
    this.fd = openSync(path, "r");
    this.window = new HeaderWindow(label);
  }

  async available(position: number, length: number): Promise<number> {
    for (;;) {
      const now = this.availableNow(position, length);
      if (now !== undefined) return now;
      await this.progress.next();
    }
  }

  availableNow(position: number, length: number): number | undefined {
    if (this.progress.failed) throw this.progress.error;
    if (this.progress.written < position + length && !this.progress.done) return undefined;
    return Math.max(0, Math.min(length, this.progress.written - position));
  }

  peek(position: number, length: number): Buffer | undefined {
    if (this.progress.failed || this.fd === undefined || this.progress.written < position + length) return undefined;
    return this.window.view(this.fd, position, length, this.progress.written);
  }

  async read(position: number, length: number, what: string): Promise<Buffer> {
    if ((await this.available(position, length)) < length) {
      throw new A3sError("ECORRUPT", `${this.label} is truncated: ${what} at byte ${position} runs past the end`, { subject: this.label });
    }
    if (this.fd === undefined) throw new Error(`${this.label}: read after close`);
    return this.window.read(this.fd, position, length, this.progress.written);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
