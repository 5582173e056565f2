import { createReadStream, createWriteStream } from "node:fs";
import { Readable, pipeline as pipeStreams, type Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import * as zlib from "node:zlib";
import { A3sError, isA3sError } from "../../errors.js";
import type { Compression } from "./magic.js";
import { truncatedStream } from "./truncated.js";
import { zstdBlocks } from "./zstd-blocks.js";

/**
 * The one decompression stack: every compressed input (a tarball, an
 * initramfs, a `docker save` archive, an OCI layer) is read through here.
 *
 * - gzip: Node's zlib.
 * - zstd: Node's zlib where the runtime has it (Node >= 22.15), else fzstd
 *   fed one block at a time (zstd-blocks.ts), which needs no host tool and
 *   keeps memory flat whatever the ratio. fzstd does not check a frame's
 *   content checksum: a layer is checked by its diff_id after, an archive by
 *   the tar or cpio reader's own header checks.
 *
 * Whatever the format, at most `maxBytes` come out before the stream fails
 * with ELIMIT: a few kilobytes of gzip can expand to terabytes (a
 * decompression bomb), and it stops here, not when the disk is full. Corrupt
 * or truncated data fails with ECORRUPT; an A3sError of the source itself (a
 * digest mismatch found at its end) passes through unchanged.
 */
export interface DecompressOptions {
  readonly maxBytes: number;
  /** Names the data in messages: the user's file, or a layer. */
  readonly subject: string;
  /** Names the limit in the ELIMIT message, e.g. "maxLayerBytes". */
  readonly limitName?: string;
  /** What the user can do about the limit. */
  readonly limitHint?: string;
}

/** Output chunk size of zlib: large chunks mean fewer hops through the thread pool and the stream machinery per byte (1 MiB against 256 KiB: about a fifth less wall time inflating a 63 MB layer). */
const ZLIB_CHUNK = 1024 * 1024;

export async function* decompress(
  source: AsyncIterable<Uint8Array>,
  compression: Compression,
  opts: DecompressOptions,
): AsyncGenerator<Uint8Array> {
  const out = compression === "gzip" ? throughZlib(source, zlib.createGunzip({ chunkSize: ZLIB_CHUNK }), "gzip", opts.subject) : zstd(source, opts.subject);
  let total = 0;
  for await (const chunk of out) {
    total += chunk.byteLength;
    if (total > opts.maxBytes) {
      throw new A3sError("ELIMIT", `${opts.subject} decompresses to more than ${opts.maxBytes} bytes${opts.limitName ? ` (${opts.limitName})` : ""}`, {
        subject: opts.subject,
        hint: opts.limitHint ?? "raise the limit if the data is trusted and really that large",
      });
    }
    yield chunk;
  }
}

/** Decompresses the file `src` into `dest` (see `decompress`; `src` names it in messages). */
export async function decompressToFile(src: string, dest: string, compression: Compression, opts: Omit<DecompressOptions, "subject">): Promise<void> {
  const plain = decompress(createReadStream(src, { highWaterMark: 1 << 20 }), compression, { ...opts, subject: src });
  await pipeline(Readable.from(plain, { objectMode: false }), createWriteStream(dest, { highWaterMark: 1 << 20 }));
}

function zstd(source: AsyncIterable<Uint8Array>, subject: string): AsyncIterable<Uint8Array> {
  const native = (zlib as unknown as { createZstdDecompress?: (o: object) => Transform }).createZstdDecompress;
  return native ? throughZlib(source, native({ chunkSize: ZLIB_CHUNK }), "zstd", subject) : zstdBlocks(source, subject);
}

/**
 * Runs `source` through a zlib transform; zlib's own errors become ECORRUPT,
 * the source's pass through. A stream that stops before its end marker is
 * named as such ("truncated gzip stream"), not left as zlib's "unexpected
 * end of file": a cut download or copy is the usual cause, and the remedy.
 */
async function* throughZlib(source: AsyncIterable<Uint8Array>, transform: Transform, name: string, subject: string): AsyncGenerator<Uint8Array> {
  let read = 0;
  async function* counted(): AsyncGenerator<Uint8Array> {
    for await (const chunk of source) {
      read += chunk.byteLength;
      yield chunk;
    }
  }
  const out = pipeStreams(Readable.from(counted(), { objectMode: false }), transform, () => {});
  try {
    for await (const chunk of out) yield chunk as Buffer;
  } catch (e) {
    if (isA3sError(e)) throw e;
    const err = e as NodeJS.ErrnoException;
    if (err.code === "Z_BUF_ERROR" || /unexpected end of file/i.test(err.message)) throw truncatedStream(name, subject, read, e);
    throw new A3sError("ECORRUPT", `${subject}: ${name} data is corrupt: ${err.message}`, { subject, cause: e });
  } finally {
    out.destroy();
  }
}
