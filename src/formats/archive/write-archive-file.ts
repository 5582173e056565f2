import { openCompressingFile, type Compression } from "../compression/index.js";
import { writeArchiveToFile } from "./archive-file-sink.js";
import { pumpArchiveInto, type ArchiveProducer } from "./archive-stream.js";

/**
 * Writes an archive to `path`, compressed as asked: uncompressed by a
 * worker thread (see archive-file-sink.ts), compressed through
 * compression/compress.ts (the same bytes for the same input on one host).
 */
export async function writeArchiveFile(produce: ArchiveProducer, path: string, compression: Compression | "none"): Promise<void> {
  if (compression === "none") {
    await writeArchiveToFile(produce, path);
    return;
  }
  const file = await openCompressingFile(path, compression);
  try {
    await pumpArchiveInto(produce, file.input);
  } catch (e) {
    await file.abort();
    throw e;
  }
  await file.finished();
}
