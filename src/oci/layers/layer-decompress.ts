import { execFile } from "node:child_process";
import { closeSync, openSync, readSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { A3sError } from "../../errors.js";
import { decompress, findIgzip, igzipFile, supportedCompression, type Igzip } from "../../formats/compression/index.js";
import { detectFormat } from "../../formats/detect.js";
import type { ImageLayer, LayerBlobFile } from "../image.js";
import { layerCompression, type LayerCompression } from "../media-types.js";
import { identityOfFd } from "../../util/file-identity.js";
import { copyFollowingOffThread, hashFileOffThread, type FileHash } from "../../util/off-thread-hash.js";
import { checkVerifiedIdentity } from "../../tree/content.js";
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
  readonly file: LayerBlobFile;
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
 * igzip and prlimit, the blob is a file of its own (or a download into
 * one) of at least IGZIP_FROM_BYTES, and its first bytes say gzip (checked
 * as for the stream: a blob declared compressed whose bytes are not is
 * refused). Otherwise undefined, and the layer goes through
 * `decompressLayer` (a download goes on into the store for it).
 */
export async function layerFileDecoder(layer: ImageLayer, subject: string): Promise<LayerFileDecoder | undefined> {
  if (layer.size < IGZIP_FROM_BYTES) return undefined;
  const tools = findIgzip();
  const file = tools ? await layer.file?.() : undefined;
  if (!tools || !file) return undefined;
  let gzip = false;
  try {
    const head = await fileHead(file, 512);
    gzip = layerCompressionFor(layer.mediaType, head, subject) === "gzip";
  } finally {
    if (!gzip && file.kind === "growing") file.release();
  }
  return gzip ? { file, tools } : undefined;
}

/** The first `n` bytes of the blob's file (all of it if shorter), waiting for a download to bring them. */
async function fileHead(file: LayerBlobFile, n: number): Promise<Buffer> {
  if (file.kind === "growing") {
    const { progress } = file;
    while (progress.written < n && !progress.done && !progress.failed) await progress.next();
    if (progress.failed) throw progress.error;
  }
  const head = Buffer.alloc(n);
  const fd = openSync(file.path, "r");
  try {
    return head.subarray(0, readSync(fd, head, 0, n, 0));
  } finally {
    closeSync(fd);
  }
}

/**
 * Decodes the layer's blob file into `out` with igzip, at most `maxBytes`,
 * each byte checked against the layer's digest in the way its file needs
 * (see LayerBlobFile):
 * - unchecked: hashed on a worker thread while igzip reads it;
 * - verified: igzip reads the very descriptor whose identity is checked
 *   against the one hashed, before and after;
 * - growing: the download hashes what it writes (the store's own check,
 *   whose verdict this waits for), and a worker thread follows the file
 *   and passes each byte on to igzip through a FIFO, so the layer decodes
 *   as it arrives with neither the decoding nor the copying on the main
 *   thread (which parses HTTP and, as igzip writes, the tar). The bytes
 *   are read back from the file the download wrote; should they differ
 *   from those it hashed, what igzip made of them fails the diff_id.
 * The check and the decoding run together, and either failing stops the
 * other. A wrong blob fails with its EDIGEST or ESIZE (nothing decoded from
 * it is published: the caller publishes only once this resolves).
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
  const decode = (input: string | number): Promise<void> =>
    igzipFile(decoder.tools, input, out, {
      maxBytes: opts.maxBytes,
      subject: opts.subject,
      fileBytes: layer.size,
      limitName: "maxLayerBytes",
      limitHint: LIMIT_HINT,
      signal: stop.signal,
    });
  const expected = { digest: layer.digest, size: layer.size, location: layer.location };
  const checkHash = (h: FileHash): void => {
    const wrong = blobMismatch(expected, opts.subject, h.bytes, h.hex);
    if (wrong) throw wrong;
  };
  const { file } = decoder;
  try {
    if (file.kind === "verified") return await decodeVerified(file, decode, opts.subject);
    if (file.kind === "growing") return await decodeGrowing(file, decode, stop);
    // On a worker thread: the main thread is parsing the tar as it lands.
    const check = hashFileOffThread(file.path, parseDigest(layer.digest).algorithm).then(checkHash);
    await bothOrStop(check, decode(file.path), stop);
  } finally {
    opts.signal.removeEventListener("abort", onAbort);
    if (file.kind === "growing") file.release();
  }
}

/** Resolves once both have; the first to fail stops the other (through `stop`) and is the error. */
async function bothOrStop(a: Promise<void>, b: Promise<void>, stop: AbortController): Promise<void> {
  a.catch((e: unknown) => stop.abort(e));
  b.catch((e: unknown) => stop.abort(e));
  await Promise.all([a, b]);
}

async function decodeVerified(file: Extract<LayerBlobFile, { kind: "verified" }>, decode: (input: number) => Promise<void>, subject: string): Promise<void> {
  const fd = openSync(file.path, "r");
  try {
    checkVerifiedIdentity(identityOfFd(fd), file.identity, file.path, subject);
    await decode(fd);
    checkVerifiedIdentity(identityOfFd(fd), file.identity, file.path, subject);
  } finally {
    closeSync(fd);
  }
}

async function decodeGrowing(file: Extract<LayerBlobFile, { kind: "growing" }>, decode: (input: string) => Promise<void>, stop: AbortController): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "a3s-layer-fifo-"));
  try {
    const fifo = join(dir, "blob");
    await makeFifo(fifo);
    const copier = copyFollowingOffThread(file.path, fifo);
    const copied = (async () => {
      // The download's own end (stored, its digest checked, or failed with its error) ends the copying.
      await file.stored;
      await copier.finish(file.progress.written);
    })();
    try {
      await bothOrStop(copied, decode(fifo), stop);
    } finally {
      // After a failure: igzip is killed by now, and the worker is let go.
      if (stop.signal.aborted) await copier.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A FIFO at `path` that only this user may open (Node has no mkfifo of its own). */
function makeFifo(path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile("mkfifo", ["-m", "600", "--", path], (e) => (e ? reject(new A3sError("ETOOL", `cannot make a FIFO with mkfifo: ${e.message}`, { subject: "mkfifo", cause: e })) : resolve()));
  });
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
