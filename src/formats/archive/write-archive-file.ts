import type { FileDigest } from "../../util/file-sha256.js";
import { openCompressingFile } from "../compression/compress.js";
import type { Compression } from "../compression/magic.js";
import { writeArchiveToFile } from "./archive-file-sink.js";
import { pumpArchiveInto, type ArchiveProducer } from "./archive-stream.js";

/**
 * Writes an archive to `path`, compressed as asked: uncompressed with its
 * writes in libuv's thread pool (see archive-file-sink.ts), compressed through
 * compression/compress.ts (the same bytes for the same input on one host).
 * `opts.gzipLevel` overrides the default gzip level. `signal` cancels the write; the promise settles only once nothing writes
 * `path` any more. It resolves to the file's SHA-256 and size where the
 * bytes went through here whole (uncompressed), else to undefined.
 */
export async function writeArchiveFile(
  produce: ArchiveProducer,
  path: string,
  compression: Compression | "none",
  signal?: AbortSignal,
  opts: { gzipLevel?: number } = {},
): Promise<FileDigest | undefined> {
  if (compression === "none") return writeArchiveToFile(produce, path, signal);
  const file = await openCompressingFile(path, compression, opts);
  try {
    await pumpArchiveInto(produce, file.input, signal);
  } catch (e) {
    await file.abort();
    throw e;
  }
  await file.finished();
  return undefined;
}
