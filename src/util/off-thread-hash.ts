import { closeSync, constants, openSync } from "node:fs";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import type { HashJob, HashReply } from "./hash-thread.js";
import { packageRoot } from "./package-root.js";

/**
 * Hashing on a worker thread, for the large files of a cold build from an
 * OCI layout: a layer's blob (checked against its digest) and its tar as
 * igzip writes it (checked against the diff_id); and copying, for a
 * registry layer's download that igzip decodes through a FIFO as it lands. On the main thread those
 * two hashes, and reading the bytes back for them, took about 300 ms of a
 * 750 ms layer phase for the bench's 170 MB layer, while the main thread
 * also parses the tar's headers and builds the tree; on a worker they run
 * on the other core beside it.
 *
 * A worker takes one job at a time; the pool keeps idle workers for the
 * next job and lets the process exit while they are idle. A worker's start
 * costs about 85 ms and 95 ms of CPU on the 2-core machine, in the layer
 * phase where the main thread, igzip and the hashing already want both
 * cores, so a job waits for a busy worker rather than start another when
 * that worker is certain to finish: one hashing a whole file always does.
 * One following a file another writer fills does not until the writer is
 * done, and the writer may be waiting for the job now submitted (a layer's
 * blob digest, checked before its tar is), so no job waits behind such a
 * job: not when it is submitted, and not when such a job takes the worker
 * a queue was waiting for. The layer phase of a cold build (bench image, tar output) with one
 * worker for both hashes instead of two: faster in 9 of 12 alternated pairs,
 * by about 90 ms at the median.
 */

export interface FileHash {
  readonly hex: string;
  readonly bytes: number;
}

const idle: Worker[] = [];
/** The workers running a job, and whether that job can wait on something else (it follows a file being written). */
const busy = new Map<Worker, { canBlock: boolean }>();
/** Jobs waiting for a worker that is certain to finish. */
const waiting: ((w: Worker) => void)[] = [];
let nextId = 1;

/** A worker for a job, as serveWaiting hands them out: an idle one, one that will be free once its whole-file job ends, or a new one. */
function takeWorker(canBlock: boolean): Promise<Worker> {
  return new Promise((resolve) => {
    waiting.push((w) => resolve(use(w, canBlock)));
    serveWaiting();
  });
}

/** Whether every worker runs a job certain to end, so a new job may wait for one. */
function everyJobEnds(): boolean {
  return busy.size > 0 && [...busy.values()].every((j) => !j.canBlock);
}

function newWorker(): Worker {
  // The worker's own file, found through the package root (as the bundled CLI can).
  return new Worker(join(packageRoot(), "dist", "src", "util", "hash-thread.js"));
}

function use(w: Worker, canBlock: boolean): Worker {
  busy.set(w, { canBlock });
  w.ref();
  return w;
}

function giveBack(w: Worker): void {
  busy.delete(w);
  w.unref();
  idle.push(w);
  serveWaiting();
}

/** A worker died in its job: the job it held fails, and the jobs waiting are served without it. */
function lose(w: Worker): void {
  busy.delete(w);
  serveWaiting();
}

/**
 * Hands the waiting jobs workers: idle ones first, then new ones as soon as
 * a busy worker runs a job that can block (a waiting job may be what that
 * job's writer waits for: none waits behind it).
 */
function serveWaiting(): void {
  for (let next = waiting[0]; next; next = waiting[0]) {
    const free = idle.pop();
    if (!free && everyJobEnds()) return;
    waiting.shift();
    next(free ?? newWorker());
  }
}

function submit(job: Omit<HashJob, "id">): Promise<FileHash> {
  const id = nextId++;
  return takeWorker(job.state !== undefined).then((worker) => hashOn(worker, { ...job, id }));
}

function hashOn(worker: Worker, job: HashJob): Promise<FileHash> {
  const id = job.id;
  return new Promise<FileHash>((resolve, reject) => {
    const onMessage = (reply: HashReply): void => {
      if (reply.id !== id) return;
      done();
      giveBack(worker);
      if ("error" in reply) reject(new Error(`hashing ${job.path}: ${reply.error}`));
      else resolve({ hex: reply.hex, bytes: reply.bytes });
    };
    const onError = (e: Error): void => {
      done();
      lose(worker);
      reject(e);
    };
    const done = (): void => {
      worker.off("message", onMessage);
      worker.off("error", onError);
    };
    worker.on("message", onMessage);
    worker.once("error", onError);
    worker.postMessage(job satisfies HashJob);
  });
}

/** The digest of the whole file at `path`, hashed on a worker thread. */
export function hashFileOffThread(path: string, algorithm: string): Promise<FileHash> {
  return submit({ path, algorithm });
}

/** A file another writer is filling, hashed on a worker thread as its bytes land. */
export interface FollowingHash {
  /** The writer is done and wrote `size` bytes in all: resolves with the digest once they are hashed. */
  finish(size: number): Promise<FileHash>;
  /** Gives up (the write failed): the worker stops and is free again. */
  stop(): Promise<void>;
}

export function hashFollowingOffThread(path: string, algorithm: string): FollowingHash {
  return following(path, algorithm, undefined);
}

/**
 * A file another writer is filling, copied on a worker thread as its bytes
 * land into the FIFO `fifo` (see HashJob.tee), for a decoder in another
 * process that reads the file as it grows. Nothing is hashed: the writer
 * hashes what it writes. `finish` resolves with the bytes copied (hex
 * empty); `stop` also lets go of a worker still waiting for the FIFO's
 * reader.
 */
export function copyFollowingOffThread(path: string, fifo: string): FollowingHash {
  return following(path, undefined, fifo);
}

function following(path: string, algorithm: string | undefined, tee: string | undefined): FollowingHash {
  const state = new SharedArrayBuffer(16);
  const flag = new Int32Array(state, 0, 1);
  const finalSize = new Float64Array(state, 8, 1);
  const result = submit({ path, state, ...(algorithm !== undefined ? { algorithm } : {}), ...(tee !== undefined ? { tee } : {}) });
  result.catch(() => undefined);
  return {
    finish(size) {
      finalSize[0] = size;
      Atomics.store(flag, 0, 1);
      Atomics.notify(flag, 0);
      return result;
    },
    async stop() {
      Atomics.store(flag, 0, -1);
      Atomics.notify(flag, 0);
      if (tee === undefined) return void (await result.catch(() => undefined));
      // The worker may be blocked opening the FIFO for a reader that will
      // never come (the decoder failed to start, or was killed): opening and
      // closing the reading end lets that open return, and with no reader
      // left its next write fails (EPIPE). Repeated until the job ends, since
      // the worker may reach its open only after one such pass.
      let ended = false;
      void result.catch(() => undefined).then(() => (ended = true));
      while (!ended) {
        try {
          closeSync(openSync(tee, constants.O_RDONLY | constants.O_NONBLOCK));
        } catch {
          // Not there: the worker's own open fails as well.
        }
        await Promise.race([result.catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 10))]);
      }
    },
  };
}
