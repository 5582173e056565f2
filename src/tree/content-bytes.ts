import { closeSync, readSync } from "node:fs";
import { contentSize, openContentFile, type ContentRef } from "./content.js";

/** Random access to the bytes of one file, with the file's size for bounds checks. */
export interface ByteSource {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
}

/**
 * Bounded, random-access reads of a tree entry's content. The audit looks at
 * a few bytes of many files (an ELF header, a "#!" line, a small text file),
 * so it never streams a whole file it does not need: every read names its
 * offset and length, and nothing past the size the tree recorded is read.
 */
export async function withContentBytes<T>(
  content: ContentRef,
  subject: string,
  use: (src: ByteSource) => Promise<T>,
): Promise<T> {
  const size = contentSize(content);
  if (content.type === "bytes") {
    const data = Buffer.from(content.data.buffer, content.data.byteOffset, content.data.byteLength);
    return use({ size, read: async (offset, length) => data.subarray(offset, Math.min(size, offset + length)) });
  }
  // Synchronous reads on purpose: each is a few KiB from (usually) the page
  // cache, and going through libuv's thread pool for each costs more than
  // the read itself; with thousands of small files that is most of an audit.
  const { fd, base } = openBacking(content, subject);
  try {
    return await use({
      size,
      async read(offset, length) {
        const n = Math.max(0, Math.min(length, size - offset));
        const buf = Buffer.allocUnsafe(n);
        let done = 0;
        while (done < n) {
          const got = readSync(fd, buf, done, n - done, base + offset + done);
          if (got === 0) break;
          done += got;
        }
        return buf.subarray(0, done);
      },
    });
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads the first bytes of a content into `buf` (as many as fit), without
 * allocating: the key scan reads thousands of small files, and a fresh
 * buffer for each is most of its garbage. Returns the bytes read.
 */
export function readContentPrefixInto(content: ContentRef, buf: Buffer, subject: string): number {
  const want = Math.min(buf.length, contentSize(content));
  if (content.type === "bytes") {
    buf.set(content.data.subarray(0, want));
    return want;
  }
  const { fd, base } = openBacking(content, subject);
  try {
    let done = 0;
    while (done < want) {
      const got = readSync(fd, buf, done, want - done, base + done);
      if (got === 0) break;
      done += got;
    }
    return done;
  } finally {
    closeSync(fd);
  }
}

/** Opens the file behind a host-file or blob-range content; `base` is where the content starts in it. */
function openBacking(content: Exclude<ContentRef, { type: "bytes" }>, subject: string): { fd: number; base: number } {
  return { fd: openContentFile(content, subject), base: content.type === "blobRange" ? content.offset : 0 };
}
