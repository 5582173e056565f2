import { closeSync, createReadStream, openSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { A3sError } from "../errors.js";
import { identityDifference, identityOfFd, sameIdentity, type FileIdentity } from "../util/file-identity.js";

/**
 * Where a regular file's bytes come from. The tree never holds file data it
 * does not have to: host files and (for OCI images) ranges of cached layer
 * blobs are read only when an output streams them.
 */
export type ContentRef =
  | { readonly type: "bytes"; readonly data: Uint8Array }
  | { readonly type: "hostFile"; readonly path: string; readonly size: number }
  | {
      /** A byte range of an uncompressed blob in the content store. */
      readonly type: "blobRange";
      readonly blobPath: string;
      readonly offset: number;
      readonly size: number;
      /**
       * The blob as it was when its digest was checked. Every open of the
       * blob compares it with what it finds, so a blob swapped or rewritten
       * after it was verified fails the read instead of reaching an output.
       */
      readonly verified?: FileIdentity;
    };

export function contentSize(c: ContentRef): number {
  return c.type === "bytes" ? c.data.byteLength : c.size;
}

/**
 * A host file named by the directory it is in and its name, for trees read
 * from a directory: the path is joined when something reads it, not held
 * whole for every file. A tree of /usr (120k files) held 10 MiB of such
 * paths; the directory's string is shared by its files and the name is the
 * one the tree keeps as the file's name anyway.
 */
export function hostFileContent(dir: string, name: string, size: number): ContentRef {
  return new HostFileInDirectory(dir, name, size);
}

class HostFileInDirectory {
  readonly type = "hostFile" as const;
  constructor(
    private readonly dir: string,
    private readonly name: string,
    readonly size: number,
  ) {}

  get path(): string {
    return join(this.dir, this.name);
  }

  toJSON(): { type: "hostFile"; path: string; size: number } {
    return { type: this.type, path: this.path, size: this.size };
  }
}

export function bytesContent(data: string | Uint8Array): ContentRef {
  return { type: "bytes", data: typeof data === "string" ? Buffer.from(data, "utf8") : data };
}

/**
 * Streams a content reference. The stream fails if the source does not have
 * exactly the size the tree recorded: a host file that changed after it was
 * added must not produce an archive whose headers lie about its sizes.
 */
export function openContent(c: ContentRef, subject: string): Readable {
  if (c.type === "bytes") return Readable.from([Buffer.from(c.data.buffer, c.data.byteOffset, c.data.byteLength)]);
  const expected = c.size;
  if (expected === 0) return Readable.from([]);
  const source =
    c.type === "hostFile"
      ? createReadStream(c.path, { highWaterMark: 1 << 20 })
      : createReadStream("", { fd: openContentFile(c, subject), start: c.offset, end: c.offset + c.size - 1, highWaterMark: 1 << 20 });
  return checkLength(source, expected, subject);
}

/**
 * Opens the file behind a host-file or blob-range content and returns its
 * descriptor. A blob range with a `verified` identity is refused unless the
 * file is still the one whose digest was checked.
 */
export function openContentFile(content: Exclude<ContentRef, { type: "bytes" }>, subject: string): number {
  const path = content.type === "hostFile" ? content.path : content.blobPath;
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw new A3sError("ECONTENT", `cannot read the content of ${subject} from ${path}: ${(e as Error).message}`, { subject, cause: e });
  }
  if (content.type === "blobRange" && content.verified) {
    try {
      checkVerifiedFile(fd, content.verified, path, subject);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }
  return fd;
}

/** Fails unless the open file `fd` is the one whose identity was taken when its digest was checked. */
export function checkVerifiedFile(fd: number, verified: FileIdentity, path: string, subject: string): void {
  checkVerifiedIdentity(identityOfFd(fd), verified, path, subject);
}

/** Fails unless `found` (the identity of an open file) is `verified`, the one taken when its digest was checked. */
export function checkVerifiedIdentity(found: FileIdentity, verified: FileIdentity, path: string, subject: string): void {
  if (sameIdentity(found, verified)) return;
  throw new A3sError(
    "ECONTENT",
    `the content of ${subject} comes from ${path}, which changed after its digest was checked: ${identityDifference(verified, found)}`,
    { subject, hint: "something else wrote to the cache during the build; build again (the blob is verified afresh)" },
  );
}

function checkLength(source: Readable, expected: number, subject: string): Readable {
  let seen = 0;
  async function* generate(): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      const buf = chunk as Buffer;
      seen += buf.length;
      if (seen > expected) break;
      yield buf;
    }
    if (seen !== expected) {
      source.destroy();
      throw new A3sError("ECONTENT", `content of ${subject} changed size: expected ${expected} bytes, read ${seen}`, {
        subject,
      });
    }
  }
  return Readable.from(generate());
}

/** Reads a whole content reference into memory (for small files only). */
export async function readContent(c: ContentRef, subject: string): Promise<Buffer> {
  if (c.type === "bytes") return Buffer.from(c.data);
  const parts: Buffer[] = [];
  for await (const chunk of openContent(c, subject)) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}
