import { Worker } from "node:worker_threads";
import { A3sError } from "../../errors.js";
import { ARCHIVE_CHUNK_BYTES, pumpArchive, type ArchiveProducer } from "./archive-stream.js";

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
 * at the price of more system calls, made on the writer thread.
 */
export const FILE_WRITE_BYTES = 16 * 1024;

/** What the main thread tells the writer thread (archive-file-worker.ts). */
export type SinkRequest =
  | { type: "write"; buffer: ArrayBuffer; length: number; position: number }
  | { type: "close" };
export type SinkReply =
  | { type: "opened" }
  | { type: "written"; buffer: ArrayBuffer }
  | { type: "closed" }
  | { type: "error"; message: string; code: string | undefined };
export interface SinkSetup {
  path: string;
  sliceBytes: number;
}

/**
 * Writes an uncompressed archive to `path`.
 *
 * The producer (reading every file of the tree) runs on this thread; the
 * writes run on a worker thread, so reading and writing overlap on two
 * cores, and no write waits for this thread to be free. Chunks move between
 * the threads without copying (their memory is transferred and comes back
 * for reuse). Measured first with the libuv thread pool: 16 writes of 64 KiB
 * per chunk, each completion handled on this thread between synchronous
 * reads, left the writer idle most of the time.
 */
export async function writeArchiveToFile(produce: ArchiveProducer, path: string, signal?: AbortSignal): Promise<void> {
  const sink = new WorkerFileSink(path);
  try {
    await sink.opened;
    let position = 0;
    await pumpArchive(produce, (chunk) => {
      const at = position;
      position += chunk.length;
      return sink.write(chunk, at);
    }, 4, signal);
    await sink.close();
  } catch (e) {
    // The descriptor belongs to the process, not the thread: close it even on failure,
    // or the deleted temporary file would keep its disk space until we exit.
    await sink.close().catch(() => undefined);
    throw e;
  } finally {
    await sink.terminate();
  }
}

class WorkerFileSink {
  private readonly worker: Worker;
  /** Replies come in request order: one waiter per request sent. */
  private readonly waiting: { resolve: (r: SinkReply) => void; reject: (e: unknown) => void }[] = [];
  private failed: unknown;
  private exited = false;
  readonly opened: Promise<SinkReply>;

  constructor(private readonly path: string) {
    const setup: SinkSetup = { path, sliceBytes: FILE_WRITE_BYTES };
    this.worker = new Worker(new URL("./archive-file-worker.js", import.meta.url), { workerData: setup });
    this.opened = this.expectReply();
    this.worker.on("message", (reply: SinkReply) => {
      const waiter = this.waiting.shift();
      if (reply.type === "error") {
        // The errno code travels as the cause, so a caller can tell a full disk from a missing directory.
        const cause = Object.assign(new Error(reply.message), { code: reply.code, path: this.path, syscall: "write" });
        const error = new A3sError("EWRITE", `cannot write ${this.path}: ${reply.message}`, { subject: this.path, cause });
        this.failed ??= error;
        waiter?.reject(error);
      } else waiter?.resolve(reply);
    });
    this.worker.on("error", (e) => this.failAll(e));
    this.worker.on("exit", () => {
      this.exited = true;
      this.failAll(new Error("the archive writer thread exited"));
    });
  }

  /** Sends a chunk (its memory moves to the worker); resolves with the memory back once written. */
  async write(chunk: Buffer, position: number): Promise<Buffer> {
    if (this.failed) throw this.failed;
    // Only a chunk's own ArrayBuffer (ARCHIVE_CHUNK_BYTES, from ChunkWriter) is transferred; any
    // other memory (a pooled small Buffer shares its ArrayBuffer with others) is copied first.
    const own = chunk.byteOffset === 0 && chunk.buffer instanceof ArrayBuffer && chunk.buffer.byteLength === ARCHIVE_CHUNK_BYTES;
    const whole = own ? (chunk.buffer as ArrayBuffer) : undefined;
    const buffer = whole ?? new Uint8Array(chunk).buffer;
    const request: SinkRequest = { type: "write", buffer, length: chunk.length, position };
    const reply = this.expectReply();
    this.worker.postMessage(request, [buffer]);
    const r = await reply;
    return r.type === "written" ? Buffer.from(r.buffer) : chunk;
  }

  async close(): Promise<void> {
    if (this.exited) return;
    const reply = this.expectReply();
    this.worker.postMessage({ type: "close" } satisfies SinkRequest);
    await reply;
  }

  async terminate(): Promise<void> {
    this.worker.removeAllListeners("exit");
    await this.worker.terminate();
  }

  private expectReply(): Promise<SinkReply> {
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  private failAll(e: unknown): void {
    this.failed ??= e;
    for (const w of this.waiting.splice(0)) w.reject(e);
  }
}
