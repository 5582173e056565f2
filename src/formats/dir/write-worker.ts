// A writer thread of the dir output (see write-pool.ts): creates the entries
// of each batch it is given with synchronous calls, checking between two
// entries whether the write was cancelled, asks for the next batch, and
// reports how it ended.
import { parentPort, workerData, type MessagePort } from "node:worker_threads";
import { isA3sError } from "../../errors.js";
import { SyncBlobReaders, writeEntrySync, type EntryJob } from "./write-entry.js";

export interface WorkerSetup {
  /** The thread's first batch: it asks for the next with a "more" message. */
  readonly jobs: readonly EntryJob[];
  /** Int32Array over a SharedArrayBuffer: element 0 becomes 1 when the write is cancelled. */
  readonly stop: Int32Array;
}

/** From the pool to the thread: another batch, or the end of the work. */
export type WorkerBatch = { type: "batch"; jobs: readonly EntryJob[] } | { type: "end" };

export type WorkerReply =
  | { type: "more" }
  | { type: "done"; written: number }
  | { type: "stopped"; written: number }
  | { type: "error"; message: string; code: string | undefined; a3s: boolean; subject: string | undefined; hint: string | undefined };

const { jobs, stop } = workerData as WorkerSetup;
if (!parentPort) throw new Error("write-worker.js runs as a worker thread");
const port: MessagePort = parentPort;
const blobs = new SyncBlobReaders();
let written = 0;

/** The last word: the thread then has nothing left to wait for, and ends. */
function finish(reply: WorkerReply): void {
  blobs.close();
  port.off("message", onBatch);
  port.postMessage(reply);
}

function run(batch: readonly EntryJob[]): void {
  try {
    for (const job of batch) {
      if (Atomics.load(stop, 0) !== 0) {
        finish({ type: "stopped", written });
        return;
      }
      writeEntrySync(job, blobs);
      written++;
    }
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { subject?: string; hint?: string };
    finish({ type: "error", message: err.message, code: err.code, a3s: isA3sError(e), subject: err.subject, hint: err.hint });
    return;
  }
  port.postMessage({ type: "more" } satisfies WorkerReply);
}

function onBatch(m: WorkerBatch): void {
  if (m.type === "end") finish({ type: "done", written });
  else run(m.jobs);
}

port.on("message", onBatch);
run(jobs);
