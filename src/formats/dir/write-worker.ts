// A writer thread of the dir output (see write-pool.ts): creates its share
// of the entries with synchronous calls, checking between two entries
// whether the write was cancelled, and reports how it ended.
import { parentPort, workerData } from "node:worker_threads";
import { isA3sError } from "../../errors.js";
import { SyncBlobReaders, writeEntrySync, type EntryJob } from "./write-entry.js";

export interface WorkerSetup {
  readonly jobs: readonly EntryJob[];
  /** Int32Array over a SharedArrayBuffer: element 0 becomes 1 when the write is cancelled. */
  readonly stop: Int32Array;
}

export type WorkerReply =
  | { type: "done"; written: number }
  | { type: "stopped"; written: number }
  | { type: "error"; message: string; code: string | undefined; a3s: boolean; subject: string | undefined; hint: string | undefined };

const { jobs, stop } = workerData as WorkerSetup;
const port = parentPort;
if (!port) throw new Error("write-worker.js runs as a worker thread");
const blobs = new SyncBlobReaders();
let written = 0;
let reply: WorkerReply;
try {
  for (const job of jobs) {
    if (Atomics.load(stop, 0) !== 0) break;
    writeEntrySync(job, blobs);
    written++;
  }
  reply = written === jobs.length ? { type: "done", written } : { type: "stopped", written };
} catch (e) {
  const err = e as NodeJS.ErrnoException & { subject?: string; hint?: string };
  reply = { type: "error", message: err.message, code: err.code, a3s: isA3sError(e), subject: err.subject, hint: err.hint };
} finally {
  blobs.close();
}
port.postMessage(reply);
