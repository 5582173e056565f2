import { open, type FileHandle } from "node:fs/promises";
import { A3sError, isA3sError } from "../../errors.js";
import { identityOf, type FileIdentity } from "../../util/file-identity.js";
import { HeaderWindow } from "./header-window.js";

/**
 * What archive readers read: bytes by position, always forward, from an
 * archive whose end they learn by asking. An archive on disk knows its size;
 * one still being written (growing-archive-file.ts) makes the reader wait.
 */
export interface ArchiveSource {
  /** How messages name the archive. */
  readonly label: string;
  /** How many of the `length` bytes at `position` the archive has (fewer only at its end); waits for bytes still to come. */
  available(position: number, length: number): Promise<number>;
  /** Exactly `length` bytes at `position`; a shorter archive is a truncated one (ECORRUPT). */
  read(position: number, length: number, what: string): Promise<Buffer>;
  /**
   * What `available` would answer, when it can be answered without waiting
   * (the bytes are there, or the archive is known to end before them);
   * undefined otherwise. Readers that go header by header call this first
   * and await only when it says nothing: with three awaits per member, and
   * a copy of each header, scanning the bench's 8.7k-member layer took
   * 270-347 ms of the main thread, and 129-268 ms without (CPU profiles of
   * three alternated pairs of builds, with the byte-wise number parsing of
   * tar/reader.ts).
   */
  availableNow(position: number, length: number): number | undefined;
  /**
   * The `length` bytes at `position` when the archive has them all already,
   * without waiting and without a copy: a view of a buffer that the next
   * `peek` or `read` may overwrite, so the caller takes what it keeps out of
   * it first. Undefined when they are not all there (then `read` says why).
   */
  peek(position: number, length: number): Buffer | undefined;
}

/**
 * An uncompressed archive on disk, read by position. Headers are read
 * through a small window; member data is never read here, only located,
 * because the tree refers to it as a range of this file.
 */
export class ArchiveFile implements ArchiveSource {
  private readonly window: HeaderWindow;

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    readonly size: number,
    /** How messages name the archive: the user's file, when `path` is a decompressed copy of it. */
    readonly label: string,
  ) {
    this.window = new HeaderWindow(label);
  }

  static async open(path: string, label = path): Promise<ArchiveFile> {
    const handle = await open(path, "r").catch((e: Error) => {
      throw new A3sError("ENOENT", `cannot open archive ${label}: ${e.message}`, { subject: label, cause: e });
    });
    const { size } = await handle.stat();
    return new ArchiveFile(path, handle, size, label);
  }

  async available(position: number, length: number): Promise<number> {
    return this.availableNow(position, length);
  }

  availableNow(position: number, length: number): number {
    return Math.max(0, Math.min(length, this.size - position));
  }

  peek(position: number, length: number): Buffer | undefined {
    return position + length > this.size ? undefined : this.window.view(this.handle.fd, position, length, this.size);
  }

  /** Exactly `length` bytes at `position`; a shorter file is a truncated archive. */
  async read(position: number, length: number, what: string): Promise<Buffer> {
    if (position + length > this.size) {
      throw new A3sError("ECORRUPT", `${this.label} is truncated: ${what} at byte ${position} runs past the end`, {
        subject: this.label,
      });
    }
    return this.window.read(this.handle.fd, position, length, this.size);
  }

  /** The identity of the open file (see util/file-identity.ts). */
  async identity(): Promise<FileIdentity> {
    return identityOf(await this.handle.stat({ bigint: true }));
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

export interface ArchiveLimits {
  /** Most members one archive may have (default 2,000,000). */
  readonly maxEntries?: number;
}

export const DEFAULT_MAX_ENTRIES = 2_000_000;
/** Linux's PATH_MAX: no longer name or symlink target can exist on a Linux filesystem. */
export const MAX_NAME_BYTES = 4096;
/** Linux's XATTR_SIZE_MAX. */
export const MAX_XATTR_VALUE = 65536;
/** Largest PAX extended header or GNU long-name member read into memory. */
export const MAX_META_MEMBER = 1 << 20;

/** Adds the archive and member to an error from the tree (a bad path, a missing hardlink target), keeping its code. */
export function inArchive(e: unknown, archive: string, member: string): unknown {
  if (!isA3sError(e) || e.message.startsWith(archive)) return e;
  return new A3sError(e.code, `${archive}: member ${JSON.stringify(member)}: ${e.message}`, {
    subject: member,
    ...(e.hint === undefined ? {} : { hint: e.hint }),
    cause: e,
  });
}
