import { closeSync, openSync, readSync } from "node:fs";
import { A3sError } from "../../errors.js";
import { decompress, findIgzip, igzipFile, supportedCompression, type Igzip } from "../../formats/compression/index.js";
import { detectFormat } from "../../formats/detect.js";
import type { ImageLayer } from "../image.js";
import { layerCompression, type LayerCompression } from "../media-types.js";
import { hashFileOffThread } from "../../util/off-thread-hash.js";
import { parseDigest } from "../digest.js";
import { blobMismatch } from "../verified-blob.js";

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
  const found = detectFormat(Buffer.from(head.buffer, head.byteOffset, head.byteLength));
  const compression = supportedCompression(found, subject);
  if (compression !== "none") return compression;
  if (declared === "gzip" || declared === "zstd") {
    throw new A3sError("ECORRUPT", `${subject}: declared ${mediaType}, but its data is not ${declared}`, {
      subject,
      hint: "the image was written by a broken tool or was tampered with",
    });
  }
  if (declared === undefined && found !== "tar") {
    throw new A3sError("EUNSUPPORTED", `${subject}: media type ${mediaType} is not a layer type this tool knows, and its data is not a tar`, {
      subject,
      hint: "layers must be tar, tar+gzip or tar+zstd (OCI or Docker media types)",
    });
  }
  return "none";
}

/**
 * The uncompressed bytes of a layer blob, streamed through the one
 * decompression stack (formats/compression): at most `maxBytes` come out
 * before the stream fails with ELIMIT naming maxLayerBytes, and a truncated
 * or corrupt stream fails with ECORRUPT. Errors of the source itself (a
 * digest mismatch found at its end) pass through unchanged.
 */
export async function* decompressLayer(
  source: AsyncIterable<Uint8Array>,
  mediaType: string,
  opts: { maxBytes: number; subject: string; onCompression?: (c: LayerCompression) => void },
): AsyncGenerator<Uint8Array> {
  const { head, rest } = await peek(source, 512);
  const compression = layerCompressionFor(mediaType, head, opts.subject);
  opts.onCompression?.(compression);
  if (compression === "none") {
    let total = 0;
    for await (const chunk of rest) {
      total += chunk.byteLength;
      if (total > opts.maxBytes) throw tooLarge(opts.subject, opts.maxBytes);
      yield chunk;
    }
    return;
  }
  yield* decompress(rest, compression, {
    maxBytes: opts.maxBytes,
    subject: opts.subject,
    limitName: "maxLayerBytes",
    limitHint: LIMIT_HINT,
  });
}

/** A gzip layer whose blob is a file of its own, and the igzip that will decode it. */
export interface LayerFileDecoder {
  readonly file: string;
  readonly tools: Igzip;
}

/**
 * Blobs smaller than this are decoded by zlib in this process even where
 * igzip could take them: starting prlimit and igzip costs more than zlib
 * needs for a small layer, and images have many small ones. Measured from a
 * Node process of 200 MiB (spawn's cost grows with the parent's size),
 * gzip -6 blobs of Debian files, medians of 5: 147 bytes, igzip 26.2 ms
 * against zlib 4.8; 75 KB, 26.8 against 11.0; 231 KB, 31.6-32.1 against
 * 19.0-20.9; 583 KB, 41.0-47.0 against 39.9-43.6; 1.3 MB, 40.8-49.5 against
 * 62.1-86.2.
 */
export const IGZIP_FROM_BYTES = 512 * 1024;

/**
 * How a layer can be decoded by igzip straight from its blob's file into
 * the store (see formats/compression/igzip.ts for why): when the host has
 * igzip and prlimit, the blob is a file of its own of at least
 * IGZIP_FROM_BYTES, and its first bytes say gzip (checked as for the
 * stream: a blob declared compressed whose bytes are not is refused).
 * Otherwise undefined, and the layer goes through `decompressLayer`.
 */
export async function layerFileDecoder(layer: ImageLayer, subject: string): Promise<LayerFileDecoder | undefined> {
  if (layer.size < IGZIP_FROM_BYTES) return undefined;
  const tools = findIgzip();
  const file = tools ? await layer.file?.() : undefined;
  if (!tools || !file) return undefined;
  const head = Buffer.alloc(512);
  const fd = openSync(file, "r");
  let got: number;
  try {
    got = readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  return layerCompressionFor(layer.mediaType, head.subarray(0, got), subject) === "gzip" ? { file, tools } : undefined;
}

/**
 * Decodes the layer's blob file into `out` with igzip, at most `maxBytes`,
 * while the blob itself is hashed against its digest on this side: the two
 * run together, and either failing stops the other. A wrong blob fails with
 * its EDIGEST or ESIZE (nothing decoded from it is published: the caller
 * publishes only once this resolves).
 */
export async function decodeLayerFile(
  layer: ImageLayer,
  decoder: LayerFileDecoder,
  out: number,
  opts: { maxBytes: number; subject: string; signal: AbortSignal },
): Promise<void> {
  const stop = new AbortController();
  const onAbort = (): void => stop.abort(opts.signal.reason);
  opts.signal.addEventListener("abort", onAbort, { once: true });
  try {
    // On a worker thread: the main thread is parsing the tar as it lands.
    const expected = { digest: layer.digest, size: layer.size, location: layer.location };
    const check = hashFileOffThread(decoder.file, parseDigest(layer.digest).algorithm).then((h) => {
      const wrong = blobMismatch(expected, opts.subject, h.bytes, h.hex);
      if (wrong) throw wrong;
    });
    check.catch((e: unknown) => stop.abort(e));
    const decode = igzipFile(decoder.tools, decoder.file, out, {
      maxBytes: opts.maxBytes,
      subject: opts.subject,
      fileBytes: layer.size,
      limitName: "maxLayerBytes",
      limitHint: LIMIT_HINT,
      signal: stop.signal,
    });
    decode.catch(() => undefined);
    await check;
    await decode;
  } finally {
    opts.signal.removeEventListener("abort", onAbort);
  }
}

const LIMIT_HINT = "a decompression bomb or a very large layer; if the image is trusted, raise maxLayerBytes";

function tooLarge(subject: string, maxBytes: number): A3sError {
  return new A3sError("ELIMIT", `${subject} decompresses to more than ${maxBytes} bytes (maxLayerBytes)`, { subject, hint: LIMIT_HINT });
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
