import { closeSync, readSync } from "node:fs";
import { Readable } from "node:stream";
import { A3sError } from "../../errors.js";
import { openContentFile, type ContentRef } from "../../tree/index.js";

/**
 * The machinery the tar and cpio writers share: archive bytes are assembled
 * into 1 MiB chunks and handed downstream only when the consumer asks for
 * more (back-pressure), so memory stays flat however large the tree is.
 *
 * File contents are read with synchronous read(2) straight into the chunk
 * being assembled, with no copy. That is deliberate: a rootfs is mostly small
 * files, and an asynchronous open/read/close would cost three thread-pool
 * round trips per file where the synchronous calls cost three system calls.
 * A synchronous call never moves more than one chunk, so the event loop is
 * held for at most one 1 MiB read at a time.
 */
export const ARCHIVE_CHUNK_BYTES = 1 << 20;

/**
 * A producer writes an archive into a ChunkWriter and yields whenever a full
 * chunk is ready, so the stream can hand it on before the producer continues.
 */
export type ArchiveProducer = (out: ChunkWriter) => Generator<void, void, void>;

export class ChunkWriter {
  private chunk: Buffer = Buffer.allocUnsafe(ARCHIVE_CHUNK_BYTES);
  private used = 0;
  /** Full chunks waiting to be handed downstream. A producer yields when this is not empty. */
  readonly ready: Buffer[] = [];
  /** Bytes written so far, padding included. */
  total = 0;
  /** The blob file read last: layer blobs hold many files, so their descriptor is kept open between files. */
  private blob: { path: string; fd: number } | undefined;
  private readonly probe = Buffer.alloc(1);
  /** Chunks handed back by a consumer that is done with them, reused instead of allocating (and page-faulting) new ones. */
  private readonly spare: Buffer[] = [];

  /** A zero-filled region of `size` bytes (at most one chunk) to build a header in place. */
  region(size: number): { buf: Buffer; at: number } {
    if (this.used + size > ARCHIVE_CHUNK_BYTES) this.flush();
    const at = this.used;
    this.chunk.fill(0, at, at + size);
    this.used += size;
    this.total += size;
    return { buf: this.chunk, at };
  }

  bytes(data: Uint8Array): void {
    let from = 0;
    while (from < data.byteLength) {
      if (this.used === ARCHIVE_CHUNK_BYTES) this.flush();
      const n = Math.min(data.byteLength - from, ARCHIVE_CHUNK_BYTES - this.used);
      this.chunk.set(data.subarray(from, from + n), this.used);
      this.used += n;
      this.total += n;
      from += n;
    }
  }

  zeros(size: number): void {
    while (size > 0) {
      if (this.used === ARCHIVE_CHUNK_BYTES) this.flush();
      const n = Math.min(size, ARCHIVE_CHUNK_BYTES - this.used);
      this.chunk.fill(0, this.used, this.used + n);
      this.used += n;
      this.total += n;
      size -= n;
    }
  }

  /**
   * Copies `size` bytes of a file's content into the archive, yielding after
   * each full chunk. The source must hold exactly `size` bytes: a host file
   * that changed after it was added to the tree would otherwise give an
   * archive whose headers disagree with its data.
   */
  *content(ref: ContentRef, size: number, subject: string): Generator<void, void, void> {
    if (ref.type === "bytes") {
      if (ref.data.byteLength !== size) throw sizeChanged(subject, size, ref.data.byteLength);
      for (let from = 0; from < size; from += ARCHIVE_CHUNK_BYTES) {
        this.bytes(ref.data.subarray(from, Math.min(size, from + ARCHIVE_CHUNK_BYTES)));
        if (this.ready.length > 0) yield;
      }
      return;
    }
    if (size === 0) return;
    if (ref.type === "hostFile") {
      const fd = openContentFile(ref, subject);
      try {
        const sawEnd = yield* this.copyFrom(fd, null, size, subject);
        // Otherwise one more read must find the end of the file, or the file grew.
        if (!sawEnd && readSync(fd, this.probe, 0, 1, null) !== 0) throw sizeChanged(subject, size, size + 1);
      } finally {
        closeSync(fd);
      }
      return;
    }
    if (this.blob?.path !== ref.blobPath) {
      this.closeBlob();
      // The descriptor is checked once, when it is opened (see openContentFile):
      // every range read through it afterwards comes from the verified file.
      this.blob = { path: ref.blobPath, fd: openContentFile(ref, subject) };
    }
    yield* this.copyFrom(this.blob.fd, ref.offset, size, subject);
  }

  /**
   * Reads `size` bytes into the archive. Returns whether the end of the file
   * was seen: the last read asks for one byte more when the chunk has room,
   * and a regular file answers short only at its end, which saves a separate
   * end-of-file read for most files.
   */
  private *copyFrom(fd: number, position: number | null, size: number, subject: string): Generator<void, boolean, void> {
    let done = 0;
    let sawEnd = false;
    while (done < size) {
      if (this.used === ARCHIVE_CHUNK_BYTES) {
        this.flush();
        yield;
      }
      const room = ARCHIVE_CHUNK_BYTES - this.used;
      const want = Math.min(size - done, room);
      const probeEnd = position === null && want === size - done && want < room;
      const n = readSync(fd, this.chunk, this.used, probeEnd ? want + 1 : want, position === null ? null : position + done);
      if (n === 0) throw sizeChanged(subject, size, done);
      if (n > want) throw sizeChanged(subject, size, size + 1);
      if (probeEnd && n === want) sawEnd = true;
      this.used += n;
      this.total += n;
      done += n;
    }
    return sawEnd;
  }

  /** Hands the partly filled chunk downstream (at the end, or when a header does not fit). */
  flush(): void {
    if (this.used === 0) return;
    this.ready.push(this.chunk.subarray(0, this.used));
    this.chunk = this.spare.pop() ?? Buffer.allocUnsafe(ARCHIVE_CHUNK_BYTES);
    this.used = 0;
  }

  /** Takes back a chunk from `ready` whose bytes the consumer no longer needs. */
  recycle(chunk: Buffer): void {
    if (chunk.byteOffset === 0 && chunk.buffer.byteLength === ARCHIVE_CHUNK_BYTES) {
      this.spare.push(Buffer.from(chunk.buffer, 0, ARCHIVE_CHUNK_BYTES));
    }
  }

  close(): void {
    this.closeBlob();
  }

  private closeBlob(): void {
    if (this.blob) closeSync(this.blob.fd);
    this.blob = undefined;
  }
}

function sizeChanged(subject: string, expected: number, seen: number): A3sError {
  return new A3sError(
    "ECONTENT",
    `content of ${subject} changed size: expected ${expected} bytes, found ${seen > expected ? "more" : seen}`,
    { subject, hint: "the source changed while the archive was written; build again" },
  );
}

/**
 * A Readable over an archive producer. Nothing is produced until the consumer
 * reads, and production stops as soon as `push` reports the consumer is full.
 */
export function archiveReadable(produce: ArchiveProducer): Readable {
  const out = new ChunkWriter();
  const steps = produce(out);
  let finished = false;
  return new Readable({
    highWaterMark: 2 * ARCHIVE_CHUNK_BYTES,
    read(): void {
      try {
        for (;;) {
          const chunk = out.ready.shift();
          if (chunk) {
            if (!this.push(chunk)) return;
            continue;
          }
          if (finished) {
            this.push(null);
            return;
          }
          if (steps.next().done === true) {
            finished = true;
            out.flush();
            out.close();
          }
        }
      } catch (e) {
        this.destroy(e as Error);
      }
    },
    destroy(err, callback): void {
      // Runs the producer's finally blocks, which close any file it has open.
      try {
        steps.return();
      } finally {
        out.close();
      }
      callback(err);
    },
  });
}

/**
 * Runs an archive producer into `write`, which resolves once the sink is
 * done with a chunk's bytes; that chunk (or the memory `write` resolves
 * with, when it moved the chunk to another thread) is then reused. At
 * most `maxInFlight` chunks are outstanding, which is the back-pressure and
 * the memory bound (a few MiB). Reusing chunks matters: a fresh 1 MiB buffer
 * per chunk costs page faults and garbage collection that, measured on
 * /usr/share (690 MB), doubled the time to write a tar file.
 *
 * `signal` stops the pump between chunks; the writes already sent are
 * awaited first, so nothing writes the file once the promise has settled.
 */
export async function pumpArchive(
  produce: ArchiveProducer,
  write: (chunk: Buffer) => Promise<Buffer | void>,
  maxInFlight = 4,
  signal?: AbortSignal,
): Promise<void> {
  const out = new ChunkWriter();
  const steps = produce(out);
  const inFlight = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  const send = (chunk: Buffer): void => {
    const p: Promise<void> = write(chunk).then(
      (memory) => {
        inFlight.delete(p);
        out.recycle(memory ?? chunk);
      },
      (error: unknown) => {
        inFlight.delete(p);
        failure ??= { error };
      },
    );
    inFlight.add(p);
  };
  try {
    let finished = false;
    while (!finished) {
      while (out.ready.length === 0 && !finished) {
        if (steps.next().done === true) {
          finished = true;
          out.flush();
        }
      }
      for (const chunk of out.ready.splice(0)) {
        while (inFlight.size >= maxInFlight) await Promise.race(inFlight);
        if (failure) throw failure.error;
        signal?.throwIfAborted();
        send(chunk);
      }
    }
    await Promise.all(inFlight);
    if (failure) throw failure.error;
  } catch (e) {
    // Whatever stopped the pump, no write may still be running when the caller cleans up.
    await Promise.allSettled(inFlight);
    throw e;
  } finally {
    steps.return();
    out.close();
  }
}

/**
 * Writes an archive producer into a Writable (a child's stdin, a compressor)
 * and ends it. Resolves when every chunk was accepted by the Writable's
 * underlying resource; the caller waits for whatever finishing it needs.
 *
 * `readerMayStop`: for a tool's stdin, where the reader may stop early and
 * rightly (a tool may stop at the end-of-archive blocks, before tar's
 * record padding): a failed write then ends the pump quietly, and only the
 * producer's own failures (a content file that changed size) reject. The
 * tool's exit status says whether stopping early was a failure.
 */
export async function pumpArchiveInto(
  produce: ArchiveProducer,
  sink: NodeJS.WritableStream,
  signal?: AbortSignal,
  opts: { readerMayStop?: boolean } = {},
): Promise<void> {
  try {
    await pumpArchive(produce, (chunk) => new Promise<void>((resolve, reject) => {
      sink.write(chunk, (err) => (err ? reject(opts.readerMayStop ? new ReaderStopped() : err) : resolve()));
    }), 4, signal);
  } catch (e) {
    if (e instanceof ReaderStopped) return;
    throw e;
  }
  await new Promise<void>((resolve) => sink.end(resolve));
}

/** A write into a sink whose reader has gone, where that may be expected (see pumpArchiveInto). */
class ReaderStopped extends Error {}
