import { join } from "node:path";
import { Worker } from "node:worker_threads";
import type { HashJob, HashReply } from "./hash-thread.js";
import { packageRoot } from "./package-root.js";

/**
 * Hashing on a worker thread, for the large files of a cold build from an
 * OCI layout: a layer's blob (checked against its digest) and its tar as
 * igzip writes it (checked against the diff_id). On the main thread those
 * two hashes, and reading the bytes back for them, took about 300 ms of a
 * 750 ms layer phase for the bench's 170 MB layer, while the main thread
 * also parses the tar's headers and builds the tree; on a worker they run
 * on the other core beside it.
 *
 * A worker takes one job at a time; the pool keeps idle workers for the
 * next job (a worker's start costs about 50 ms) and lets the process exit
 * while they are idle.
 */

export interface FileHash {
  readonly hex: string;
  readonly bytes: number;
}

const idle: Worker[] = [];
let nextId = 1;

function takeWorker(): Worker {
  // The worker's own file, found through the package root (as the bundled CLI can).
  const w = idle.pop() ?? new Worker(join(packageRoot(), "dist", "src", "util", "hash-thread.js"));
  w.ref();
  return w;
}

function giveBack(w: Worker): void {
  w.unref();
  idle.push(w);
}

function submit(job: Omit<HashJob, "id">): Promise<FileHash> {
  const worker = takeWorker();
  const id = nextId++;
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
      reject(e);
    };
    const done = (): void => {
      worker.off("message", onMessage);
      worker.off("error", onError);
    };
    worker.on("message", onMessage);
    worker.once("error", onError);
    worker.postMessage({ ...job, id } satisfies HashJob);
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
  const state = new SharedArrayBuffer(16);
  const flag = new Int32Array(state, 0, 1);
  const finalSize = new Float64Array(state, 8, 1);
  const result = submit({ path, algorithm, state });
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
      await result.catch(() => undefined);
    },
  };
}
