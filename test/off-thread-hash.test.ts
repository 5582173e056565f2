import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { appendFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { hashFileOffThread, hashFollowingOffThread } from "../src/util/off-thread-hash.js";
import { tempDir } from "./helpers/temp-dir.js";

const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

/** Rejects after `ms`, naming what did not end: a deadlock fails the test instead of hanging it. */
function within<T>(p: Promise<T>, ms: number, what: string, t: { after(fn: () => void): void }): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  t.after(() => clearTimeout(timer));
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(what)), ms)))]);
}

describe("hashing on worker threads", () => {
  // First, while the pool has no worker: the queue is what is tested.
  it("never leaves a queued job behind a following hash that took the freed worker", async (t) => {
    const dir = tempDir();
    const big = join(dir, "big");
    const small = join(dir, "small");
    const growing = join(dir, "growing");
    writeFileSync(big, Buffer.alloc(8_000_000, 5));
    writeFileSync(small, Buffer.alloc(1000, 6));
    writeFileSync(growing, Buffer.alloc(0));
    // The whole-file job runs; the following one and a second whole-file
    // one queue for its worker. Once it ends, the following job takes the
    // worker and waits on its writer, and the writer waits for the second
    // whole-file job: that one must get a worker of its own.
    const first = hashFileOffThread(big, "sha256");
    const following = hashFollowingOffThread(growing, "sha256");
    t.after(() => void following.stop());
    const second = hashFileOffThread(small, "sha256");
    assert.equal((await first).hex, sha256(Buffer.alloc(8_000_000, 5)));
    assert.equal((await within(second, 20_000, "the second whole-file hash waited behind the following one", t)).hex, sha256(Buffer.alloc(1000, 6)));
    appendFileSync(growing, "xyz");
    assert.deepEqual(await following.finish(3), { hex: sha256(Buffer.from("xyz")), bytes: 3 });
  });

  it("hashes several whole files at once, each with its own digest", async () => {
    const dir = tempDir();
    const files = [0, 1, 2].map((i) => {
      const data = Buffer.alloc((i + 1) * 300_000, i + 1);
      const path = join(dir, `f${i}`);
      writeFileSync(path, data);
      return { path, data };
    });
    const got = await Promise.all(files.map((f) => hashFileOffThread(f.path, "sha256")));
    assert.deepEqual(
      got,
      files.map((f) => ({ hex: sha256(f.data), bytes: f.data.length })),
    );
  });

  it("never makes a whole-file hash wait behind a hash that follows a file still being written", async (t) => {
    // The layer path's order reversed: the writer of the followed file waits
    // for the whole-file digest before it finishes. Were the whole-file job
    // queued behind the following one, neither would ever end.
    const dir = tempDir();
    const growing = join(dir, "growing");
    const whole = join(dir, "whole");
    writeFileSync(growing, Buffer.alloc(0));
    writeFileSync(whole, Buffer.alloc(500_000, 7));
    const following = hashFollowingOffThread(growing, "sha256");
    t.after(() => void following.stop());
    const first = await within(hashFileOffThread(whole, "sha256"), 20_000, "the whole-file hash waited behind the following one", t);
    assert.equal(first.hex, sha256(Buffer.alloc(500_000, 7)));
    const parts = [Buffer.alloc(100_000, 1), Buffer.alloc(50_000, 2)];
    for (const p of parts) appendFileSync(growing, p);
    assert.deepEqual(await following.finish(150_000), { hex: sha256(Buffer.concat(parts)), bytes: 150_000 });
  });

  it("runs a following hash queued behind a whole-file one once that one ends, and a stopped one ends too", async () => {
    const dir = tempDir();
    const whole = join(dir, "whole");
    const growing = join(dir, "growing");
    const stopped = join(dir, "stopped");
    writeFileSync(whole, Buffer.alloc(2_000_000, 3));
    writeFileSync(growing, Buffer.alloc(0));
    writeFileSync(stopped, Buffer.alloc(0));
    const first = hashFileOffThread(whole, "sha256");
    const following = hashFollowingOffThread(growing, "sha256");
    const given = hashFollowingOffThread(stopped, "sha256");
    appendFileSync(growing, "abc");
    assert.equal((await first).hex, sha256(Buffer.alloc(2_000_000, 3)));
    await given.stop();
    assert.deepEqual(await following.finish(3), { hex: sha256(Buffer.from("abc")), bytes: 3 });
  });
});
