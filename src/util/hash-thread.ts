// The body of a hashing worker thread (see off-thread-hash.ts). It takes one
// job at a time from its parent and answers each with the digest or an error.
import { createHash } from "node:crypto";
import { closeSync, fstatSync, openSync, readSync, writeSync } from "node:fs";
import { parentPort } from "node:worker_threads";

/** What the main thread asks a worker (see off-thread-hash.ts). */
export interface HashJob {
  readonly id: number;
  readonly path: string;
  /** Undefined for a job that only copies the file to `tee`: its reply's hex is then empty. */
  readonly algorithm?: string;
  /** For a file still being written: [int32 state: 0 writing, 1 done, -1 stop][pad][float64 final size]. */
  readonly state?: SharedArrayBuffer;
  /**
   * A FIFO that every byte read is also written to, in order (a decoder
   * in another process reads it: layer-decompress.ts). Opened once the
   * file is, blocking until its reader opens it; closed when the job ends,
   * which is the reader's end of input.
   */
  readonly tee?: string;
}

export type HashReply = { readonly id: number; readonly hex: string; readonly bytes: number } | { readonly id: number; readonly error: string };

const buffer = Buffer.allocUnsafe(1 << 20);

/**
 * Hashes the file at `path` from its start. With `state`, the file is still
 * being written: bytes are hashed as they appear, and the job ends once the
 * parent has stored the final size there (state[0] = 1) and that many bytes
 * are hashed, or stops when it stores -1.
 */
function run(job: HashJob): HashReply {
  const hash = job.algorithm === undefined ? undefined : createHash(job.algorithm);
  const fd = openSync(job.path, "r");
  let tee: number | undefined;
  try {
    // Blocks until the reader opens its end, or the parent, stopping the
    // job, opens and closes it to let this open return (off-thread-hash.ts).
    if (job.tee !== undefined) tee = openSync(job.tee, "w");
    const flag = job.state ? new Int32Array(job.state, 0, 1) : undefined;
    const finalSize = job.state ? new Float64Array(job.state, 8, 1) : undefined;
    let hashed = 0;
    for (;;) {
      const state = flag ? Atomics.load(flag, 0) : 1;
      if (state === -1) return { id: job.id, error: "stopped" };
      const size = fstatSync(fd).size;
      while (hashed < size) {
        const got = readSync(fd, buffer, 0, Math.min(buffer.length, size - hashed), hashed);
        if (got === 0) return { id: job.id, error: `${job.path} shrank while it was hashed` };
        hash?.update(buffer.subarray(0, got));
        if (tee !== undefined) writeAll(tee, buffer.subarray(0, got));
        hashed += got;
      }
      if (state === 1) {
        const expected = finalSize ? (finalSize[0] as number) : hashed;
        if (hashed === expected) return { id: job.id, hex: hash?.digest("hex") ?? "", bytes: hashed };
        // The writer is done: no more bytes will come.
        if (hashed > expected || size === hashed) return { id: job.id, error: `${job.path} has ${hashed} bytes, not the ${expected} written` };
        continue;
      }
      // Sleeps a millisecond, or until the parent says the writer is done.
      if (flag) Atomics.wait(flag, 0, 0, 1);
    }
  } finally {
    closeSync(fd);
    if (tee !== undefined) closeSync(tee);
  }
}

/** A blocking write of all of `bytes` (a pipe takes them in pieces); EPIPE when its reader has gone. */
function writeAll(fd: number, bytes: Buffer): void {
  for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
}

parentPort?.on("message", (job: HashJob) => {
  let reply: HashReply;
  try {
    reply = run(job);
  } catch (e) {
    reply = { id: job.id, error: (e as Error).message };
  }
  parentPort?.postMessage(reply);
});
