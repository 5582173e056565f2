import { Readable, pipeline, type Transform } from "node:stream";
import * as zlib from "node:zlib";
import { A3sError, isA3sError } from "../errors.js";
import { compressionFromMagic } from "../sources/archive-decompress.js";
import { looksLikeTarHeader } from "../sources/tar-reader.js";
import { layerCompression, type LayerCompression } from "./media-types.js";
import { zstdDecompress } from "./layer-zstd.js";

/** Output chunk size of zlib: large chunks mean fewer hops through the stream machinery per byte. */
const ZLIB_CHUNK = 256 * 1024;

/**
 * Which decompressor a layer needs. The media type says what the producer
 * meant; the first bytes say what it did. When they disagree the bytes win
 * for gzip and zstd (a tool that labels a gzip layer as plain tar is common,
 * and the diff_id check afterwards proves the result either way), while a
 * layer declared compressed whose bytes are not is refused: its producer is
 * broken, and guessing would hide it. xz, bzip2 and lz4 are named and refused.
 */
export function layerCompressionFor(mediaType: string, head: Uint8Array, subject: string): LayerCompression {
  const declared = layerCompression(mediaType);
  const found = compressionFromMagic(Buffer.from(head.buffer, head.byteOffset, head.byteLength), subject);
  if (found !== "none") return found;
  if (declared === "gzip" || declared === "zstd") {
    throw new A3sError("ECORRUPT", `${subject}: declared ${mediaType}, but its data is not ${declared}`, {
      subject,
      hint: "the image was written by a broken tool or was tampered with",
    });
  }
  if (declared === undefined && !looksLikeTarHeader(Buffer.from(head.buffer, head.byteOffset, head.byteLength))) {
    throw new A3sError("EUNSUPPORTED", `${subject}: media type ${mediaType} is not a layer type this tool knows, and its data is not a tar`, {
      subject,
      hint: "layers must be tar, tar+gzip or tar+zstd (OCI or Docker media types)",
    });
  }
  return "none";
}

/**
 * The uncompressed bytes of a layer blob, streamed. Whatever the format, at
 * most `maxBytes` come out before the stream fails with ELIMIT (a
 * decompression bomb stops there, not when the disk is full), and a
 * truncated or corrupt stream fails with ECORRUPT. Errors of the source
 * itself (a digest mismatch found at its end) pass through unchanged.
 */
export async function* decompressLayer(
  source: AsyncIterable<Uint8Array>,
  mediaType: string,
  opts: { maxBytes: number; subject: string; onCompression?: (c: LayerCompression) => void },
): AsyncGenerator<Uint8Array> {
  const { head, rest } = await peek(source, 512);
  const compression = layerCompressionFor(mediaType, head, opts.subject);
  opts.onCompression?.(compression);
  let out: AsyncIterable<Uint8Array>;
  if (compression === "none") out = rest;
  else if (compression === "gzip") out = throughZlib(rest, zlib.createGunzip({ chunkSize: ZLIB_CHUNK }), "gzip", opts.subject);
  else {
    const native = (zlib as unknown as { createZstdDecompress?: (o: object) => Transform }).createZstdDecompress;
    out = native
      ? throughZlib(rest, native({ chunkSize: ZLIB_CHUNK }), "zstd", opts.subject)
      : zstdDecompress(rest, opts.subject);
  }
  let total = 0;
  for await (const chunk of out) {
    total += chunk.byteLength;
    if (total > opts.maxBytes) {
      throw new A3sError("ELIMIT", `${opts.subject} decompresses to more than ${opts.maxBytes} bytes (maxLayerBytes)`, {
        subject: opts.subject,
        hint: "a decompression bomb or a very large layer; if the image is trusted, raise maxLayerBytes",
      });
    }
    yield chunk;
  }
}

/** Runs `source` through a zlib transform; zlib's own errors become ECORRUPT, the source's pass through. */
async function* throughZlib(
  source: AsyncIterable<Uint8Array>,
  transform: Transform,
  name: string,
  subject: string,
): AsyncGenerator<Uint8Array> {
  const out = pipeline(Readable.from(source, { objectMode: false }), transform, () => {});
  try {
    for await (const chunk of out) yield chunk as Buffer;
  } catch (e) {
    if (isA3sError(e)) throw e;
    throw new A3sError("ECORRUPT", `${subject}: ${name} data is corrupt: ${(e as Error).message}`, { subject, cause: e });
  } finally {
    out.destroy();
  }
}

/** The first `n` bytes of a stream (fewer if it is shorter), and the whole stream again, nothing lost. */
async function peek(
  source: AsyncIterable<Uint8Array>,
  n: number,
): Promise<{ head: Uint8Array; rest: AsyncIterable<Uint8Array> }> {
  const it = source[Symbol.asyncIterator]();
  const seen: Uint8Array[] = [];
  let have = 0;
  let done = false;
  while (have < n) {
    const r = await it.next();
    if (r.done) {
      done = true;
      break;
    }
    seen.push(r.value);
    have += r.value.byteLength;
  }
  const head = Buffer.concat(seen).subarray(0, n);
  async function* rest(): AsyncGenerator<Uint8Array> {
    yield* seen;
    if (done) return;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield r.value;
    }
  }
  return { head, rest: rest() };
}
