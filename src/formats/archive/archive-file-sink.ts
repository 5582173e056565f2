import { createHash } from "node:crypto";
import { close, open, write } from "node:fs";
import { A3sError } from "../../errors.js";
import type { FileDigest } from "../../util/file-sha256.js";
import { pumpArchive, type ArchiveProducer } from "./archive-stream.js";

/**
 * Bytes per write(2) to the output file. Linux (6.18 here, ext4) fills the
 * page cache with folios as large as a write and its alignment allow, and
 * large folios are slow to get when memory is fragmented by a full page
 * cache. Measured copying 2 GB from a cached file: 1 MiB writes at 1 MiB-
 * aligned offsets took 4.5-6.4 s, the same writes shifted by 512 bytes
 * 1.0-1.3 s, 64 KiB writes 1.1-1.3 s, 16 KiB writes 1.4 s. Tar chunks are
 * always 1 MiB-aligned, and writing /usr as tar with 64 KiB writes still
 * cost 6-7 s of system time against 4 s with 16 KiB writes (cpio, whose
 * chunks end unaligned, 4 s either way). 16 KiB writes keep folios small
 * at the price of more system calls, made in libuv's thread pool.
 */
export const FILE_WRITE_BYTES = 16 * 1024;

/**
 * Chunks being written at once. Two keep the disk busy while the next chunk
 * is assembled; more only add memory (each is ARCHIVE_CHUNK_BYTES).
 */
const CHUNKS_IN_FLIGHT = 2;

/**
 * Writes an uncompressed archive to `path`.
 *
 * The producer (reading every file of the tree) runs on this thread; each
 * finished chunk goes to libuv's thread pool as all of its FILE_WRITE_BYTES
 * slices at once (positional writes, so their order does not matter), so
 * reading and writing overlap on two cores and no slice waits for this
 * thread to be free. The chunk's memory comes back for reuse once its last
 * slice is written.
 *
 * This replaced a worker thread that did the writes: the same overlap, but a
 * second V8 isolate costs about 12 MB of resident memory, which put the peak
 * RSS of writing /usr (141k entries) as tar or cpio at 159 MB. Measured on
 * /usr, at load 5-7 on 2 cores: the thread pool with two chunks in flight
 * 144-145 MB and 12.5 s (cpio) / 15.5 s (tar); the worker 158 MB and 16.5 s /
 * 18.9 s. (An earlier pool version sent one slice at a time and waited for
 * each completion on this thread, between synchronous reads: that left the
 * disk idle.)
 */
export async function writeArchiveToFile(produce: ArchiveProducer, path: string, signal?: AbortSignal): Promise<FileDigest> {
  const fd = await openFile(path);
  try {
    // Chunks come in file order, each whole before its write is submitted:
    // hashing them here spares the caller reading the file back to hash it
    // (about 100 ms for a 120 MB cpio on this project's machine).
    const hash = createHash("sha256");
    let position = 0;
    await pumpArchive(produce, (chunk) => {
      const at = position;
      position += chunk.length;
      hash.update(chunk);
      return writeChunk(fd, chunk, at, path);
    }, CHUNKS_IN_FLIGHT, signal);
    return { sha256: hash.digest("hex"), bytes: position };
  } finally {
    // pumpArchive settles only once no write is running, so the descriptor is free to close.
    await closeFile(fd, path);
  }
}

/** Writes one chunk at `position` as FILE_WRITE_BYTES slices, all submitted at once; settles when every slice has. */
function writeChunk(fd: number, chunk: Buffer, position: number, path: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let pending = 0;
    let failure: unknown;
    for (let from = 0; from < chunk.length; from += FILE_WRITE_BYTES) {
      const length = Math.min(FILE_WRITE_BYTES, chunk.length - from);
      pending++;
      write(fd, chunk, from, length, position + from, (e, written) => {
        // A regular file takes a whole write or fails (ENOSPC, EIO); a short one is an error all the same.
        if (e) failure ??= writeError(path, e);
        else if (written !== length) failure ??= writeError(path, Object.assign(new Error(`short write: ${written} of ${length} bytes`), { code: "EIO" }));
        if (--pending > 0) return;
        if (failure) reject(failure);
        else resolve(chunk);
      });
    }
  });
}

function openFile(path: string): Promise<number> {
  return new Promise((resolve, reject) => open(path, "w", (e, fd) => (e ? reject(writeError(path, e)) : resolve(fd))));
}

function closeFile(fd: number, path: string): Promise<void> {
  return new Promise((resolve, reject) => close(fd, (e) => (e ? reject(writeError(path, e)) : resolve())));
}

/** The errno code travels as the cause, so a caller can tell a full disk from a missing directory. */
function writeError(path: string, e: Error & { code?: string }): A3sError {
  const cause = Object.assign(new Error(e.message), { code: e.code, path, syscall: "write" });
  return new A3sError("EWRITE", `cannot write ${path}: ${e.message}`, { subject: path, cause });
}
