import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { A3sError } from "../../errors.js";
import { packageRoot } from "../../util/package-root.js";
import { SyncBlobReaders, writeEntrySync, type EntryJob } from "./write-entry.js";
import type { WorkerBatch, WorkerReply, WorkerSetup } from "./write-worker.js";

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
 * when there are enough of them and the machine has the cores. The threads
 * take the entries in small batches, each asking for the next when it is
 * done, so that they finish together: what an entry costs depends on the
 * kernel's work for it more than on its bytes. With shares cut in advance
 * by bytes, one thread of the bench image's write ended after 631-675 ms
 * and the other after 1,541-2,263; with batches both end within 20 ms of
 * each other. (On that machine the write took as long either way,
 * 1.39-1.81 s, and 1.60-1.64 s on one thread: nearly all of it is the
 * kernel creating the files, 175-325 us each with no disk I/O, as for GNU
 * tar, and two threads do not run that faster than one. It is mostly the
 * VM's first use of memory the host had taken back: tar -x of the same
 * layer took 1.8 s, then 0.35-0.46 s right after 170 MB of page cache had
 * been freed.)
 *
 * Tried and not kept: batches of one directory each, no two threads in one
 * directory at once. After a large delete on an ext4 without a journal,
 * every file creation scans past the recently deleted inodes
 * (recently_deleted() in the kernel's inode allocator) while it holds its
 * directory's lock, and `perf` put 13 % of the bench image's write in the
 * other thread spinning on that lock; there, per-directory batches gave a
 * paired median of -110 ms over 6 alternated pairs (faster in 4), while the
 * file system's recovery moved both sides from 3.2 to 1.1 s within the
 * series. On a new ext4 with a journal (no such scan, and no spinning in
 * `perf`) the per-directory batches were slower: the build +235 ms, paired
 * median of 6 alternated pairs, faster in 1 (smaller batches, more round
 * trips to this thread).
 *
 * `signal` stops the write between two entries, and a failed thread stops
 * the others' batches; the promise settles only once no thread writes any
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
  const queue = new BatchQueue(jobs, () => Atomics.load(stop, 0) !== 0);
  try {
    const firsts: EntryJob[][] = [];
    for (let i = 0; i < threads; i++) firsts.push(queue.next() ?? []);
    const results = await Promise.allSettled(firsts.map((first) => runWorker({ jobs: first, stop }, queue)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
    signal?.throwIfAborted();
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/** At most this many entries in one batch. */
const BATCH_ENTRIES = 64;
/** A batch ends early once it holds this many bytes of content. */
const BATCH_BYTES = 4 << 20;

/** The entries handed out in order, a batch at a time, until the work is stopped or has failed. */
class BatchQueue {
  private at = 0;
  private failed = false;

  constructor(
    private readonly jobs: readonly EntryJob[],
    private readonly stopped: () => boolean,
  ) {}

  /** The next batch, or undefined when there is none to give. */
  next(): EntryJob[] | undefined {
    if (this.failed || this.stopped() || this.at >= this.jobs.length) return undefined;
    const batch: EntryJob[] = [];
    let bytes = 0;
    while (this.at < this.jobs.length && batch.length < BATCH_ENTRIES && bytes < BATCH_BYTES) {
      const job = this.jobs[this.at++] as EntryJob;
      batch.push(job);
      bytes += contentBytes(job);
    }
    return batch;
  }

  /** A thread failed: the others get no more work. */
  fail(): void {
    this.failed = true;
  }
}

function contentBytes(j: EntryJob): number {
  return j.what.type === "bytes" ? j.what.data.byteLength : j.what.type === "symlink" ? 0 : j.what.size;
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

/** The worker's module: the compiled one in dist/src, which the package carries. */
const WRITE_WORKER = `${packageRoot()}/dist/src/formats/dir/write-worker.js`;

function runWorker(setup: WorkerSetup, queue: BatchQueue): Promise<void> {
  return new Promise((resolve, reject) => {
    // Found from the package root, not from this module: the bundled CLI has
    // this code in one file, while the worker is always dist/src's own module.
    const worker = new Worker(WRITE_WORKER, { workerData: setup });
    let reply: WorkerReply | undefined;
    worker.on("message", (r: WorkerReply) => {
      if (r.type !== "more") {
        reply = r;
        if (r.type === "error") queue.fail();
        return;
      }
      const jobs = queue.next();
      worker.postMessage((jobs ? { type: "batch", jobs } : { type: "end" }) satisfies WorkerBatch);
    });
    worker.on("error", (e) => {
      queue.fail();
      reply ??= { type: "error", message: e.message, code: undefined, a3s: false, subject: undefined, hint: undefined };
    });
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
