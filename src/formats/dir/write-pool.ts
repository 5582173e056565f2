import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { A3sError } from "../../errors.js";
import { packageRoot } from "../../util/package-root.js";
import { SyncBlobReaders, writeEntrySync, type EntryJob } from "./write-entry.js";
import type { WorkerReply, WorkerSetup } from "./write-worker.js";

/**
 * Below this many entries the files are written on this thread: starting a
 * thread (about 10 MiB and tens of milliseconds) costs more than it saves.
 */
const THREADS_FROM_ENTRIES = 2000;
/** At most this many writer threads: past a few, the disk, not the calls, is the limit. */
const MAX_THREADS = 4;
/** How long the write on this thread runs before it lets the event loop turn (to see a cancellation), in milliseconds. */
const SLICE_MS = 20;

/**
 * Creates the entries (regular files and symlinks, their directories made
 * already) with synchronous calls, in parallel on a bounded pool of threads
 * when there are enough of them and the machine has the cores: each thread
 * takes a contiguous share, balanced by bytes. `signal` stops the write
 * between two entries; the promise settles only once no thread writes any
 * more, so the caller can remove the directory knowing nothing will create
 * an entry in it afterwards.
 */
export async function writeEntries(jobs: readonly EntryJob[], signal: AbortSignal | undefined): Promise<void> {
  const threads = Math.min(MAX_THREADS, availableParallelism(), Math.floor(jobs.length / (THREADS_FROM_ENTRIES / 2)));
  if (jobs.length < THREADS_FROM_ENTRIES || threads < 2) {
    await writeHere(jobs, signal);
    return;
  }
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const onAbort = (): void => {
    Atomics.store(stop, 0, 1);
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const results = await Promise.allSettled(shares(jobs, threads).map((share) => runWorker({ jobs: share, stop })));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
    signal?.throwIfAborted();
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/** On this thread, in slices of SLICE_MS between which the event loop turns. */
async function writeHere(jobs: readonly EntryJob[], signal: AbortSignal | undefined): Promise<void> {
  const blobs = new SyncBlobReaders();
  try {
    let started = performance.now();
    for (const job of jobs) {
      writeEntrySync(job, blobs);
      if (performance.now() - started >= SLICE_MS) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        signal?.throwIfAborted();
        started = performance.now();
      }
    }
  } finally {
    blobs.close();
  }
}

/** `jobs` cut into `n` contiguous shares of about equal bytes (a file's cost is mostly its bytes, plus a few calls each). */
function shares(jobs: readonly EntryJob[], n: number): EntryJob[][] {
  const PER_ENTRY = 16 * 1024;
  const cost = (j: EntryJob): number => PER_ENTRY + (j.what.type === "bytes" ? j.what.data.byteLength : j.what.type === "symlink" ? 0 : j.what.size);
  const total = jobs.reduce((sum, j) => sum + cost(j), 0);
  const out: EntryJob[][] = [[]];
  let acc = 0;
  for (const j of jobs) {
    if (acc >= (total / n) * out.length && out.length < n) out.push([]);
    (out[out.length - 1] as EntryJob[]).push(j);
    acc += cost(j);
  }
  return out.filter((s) => s.length > 0);
}

/** The worker's module: the compiled one in dist/src, which the package carries. */
const WRITE_WORKER = `${packageRoot()}/dist/src/formats/dir/write-worker.js`;

function runWorker(setup: WorkerSetup): Promise<void> {
  return new Promise((resolve, reject) => {
    // Found from the package root, not from this module: the bundled CLI has
    // this code in one file, while the worker is always dist/src's own module.
    const worker = new Worker(WRITE_WORKER, { workerData: setup });
    let reply: WorkerReply | undefined;
    worker.on("message", (r: WorkerReply) => (reply = r));
    worker.on("error", (e) => (reply ??= { type: "error", message: e.message, code: undefined, a3s: false, subject: undefined, hint: undefined }));
    // Settles on exit, not on the reply: only then does the thread write nothing more.
    worker.on("exit", () => {
      if (!reply) reject(new Error("a dir output writer thread ended without a word"));
      else if (reply.type !== "error") resolve();
      else if (reply.a3s) {
        reject(new A3sError(reply.code ?? "EIO", reply.message, { ...(reply.subject !== undefined ? { subject: reply.subject } : {}), ...(reply.hint !== undefined ? { hint: reply.hint } : {}) }));
      }
      else reject(Object.assign(new Error(reply.message), { code: reply.code }));
    });
  });
}
