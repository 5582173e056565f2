import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, it } from "node:test";
import { isA3sError } from "../src/errors.js";
import { ContentStore, CorruptBlobError } from "../src/oci/store/content-store.js";
import { parseDigest } from "../src/oci/digest.js";
import { tempDir } from "./helpers/temp-dir.js";

const sha = (b: Buffer): string => `sha256:${createHash("sha256").update(b).digest("hex")}`;

async function* chunks(b: Buffer, size = 1000): AsyncGenerator<Buffer> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

describe("content store", () => {
  it("stores a blob under its digest after checking it", async () => {
    const store = new ContentStore(tempDir());
    const data = randomBytes(50_000);
    const digest = sha(data);
    assert.equal(await store.has(digest), false);
    const path = await store.put(digest, chunks(data), { size: data.length });
    assert.equal(path, join(store.root, "sha256", digest.slice(7)));
    assert.deepEqual(readFileSync(path), data);
    assert.equal(await store.has(digest), true);
    assert.equal(await store.has(digest, data.length + 1), false);
    assert.equal(await store.size(digest), data.length);
    assert.deepEqual(await store.readBytes(digest), data);
    assert.deepEqual(readdirSync(join(store.root, "tmp")), []);
  });

  it("refuses a digest mismatch and leaves nothing behind", async () => {
    const store = new ContentStore(tempDir());
    const data = randomBytes(10_000);
    const wrong = sha(Buffer.from("something else"));
    await assert.rejects(store.put(wrong, chunks(data)), (e: unknown) => isA3sError(e, "EDIGEST") && e.message.includes(wrong) && e.message.includes(sha(data)));
    assert.equal(await store.has(wrong), false);
    assert.deepEqual(readdirSync(join(store.root, "tmp")), []);
    assert.deepEqual(readdirSync(join(store.root, "sha256")), []);
  });

  it("stops at the declared size or the byte cap, and refuses a short blob", async () => {
    const store = new ContentStore(tempDir());
    const data = randomBytes(10_000);
    await assert.rejects(store.put(sha(data), chunks(data), { size: 5_000 }), (e: unknown) => isA3sError(e, "ESIZE"));
    await assert.rejects(store.put(sha(data), chunks(data), { maxBytes: 9_999 }), (e: unknown) => isA3sError(e, "ESIZE") && /limit/.test(e.message));
    await assert.rejects(store.put(sha(data), chunks(data.subarray(0, 9_000)), { size: 10_000 }), (e: unknown) => isA3sError(e, "ESIZE"));
    assert.deepEqual(readdirSync(join(store.root, "tmp")), []);
    assert.equal(await store.has(sha(data)), false);
  });

  it("never turns a hostile digest into a path", () => {
    const store = new ContentStore(tempDir());
    for (const bad of ["sha256:../../etc/passwd", "sha256:" + "A".repeat(64), "sha256:" + "a".repeat(63), "md5:" + "a".repeat(32), "sha256:/" + "a".repeat(63), "a".repeat(64)]) {
      assert.throws(() => store.path(bad), (e: unknown) => isA3sError(e, "EDIGEST"), bad);
    }
    assert.deepEqual(parseDigest(`sha512:${"0".repeat(128)}`), { algorithm: "sha512", hex: "0".repeat(128) });
  });

  it("is safe when two writers store the same digest at once (in one process and in two)", async () => {
    const root = tempDir();
    const store = new ContentStore(root);
    const data = randomBytes(3 * 1024 * 1024);
    const digest = sha(data);
    const paths = await Promise.all([store.put(digest, chunks(data, 65536)), store.put(digest, chunks(data, 4096))]);
    assert.equal(paths[0], paths[1]);
    assert.deepEqual(readFileSync(paths[0]!), data);

    // Two processes: each streams the same bytes from a file into a fresh store root.
    const root2 = tempDir();
    const src = join(root2, "input");
    writeFileSync(src, data);
    const script = `
      import { createReadStream } from "node:fs";
      import { ContentStore } from ${JSON.stringify(new URL("../src/oci/store/content-store.js", import.meta.url).href)};
      await new ContentStore(process.argv[1]).put(process.argv[2], createReadStream(process.argv[3], { highWaterMark: 4096 }));
      process.stdout.write("ok");`;
    const run = promisify(execFile);
    const outs = await Promise.all([1, 2, 3].map(() => run(process.execPath, ["--input-type=module", "-e", script, join(root2, "store"), digest, src])));
    assert.deepEqual(outs.map((o) => o.stdout), ["ok", "ok", "ok"]);
    const store2 = new ContentStore(join(root2, "store"));
    assert.deepEqual(readFileSync(store2.path(digest)), data);
    assert.deepEqual(readdirSync(join(store2.root, "tmp")), []);
  });

  it("hashes every read: a blob corrupted on disk fails at its end with ECACHE, is removed, and no reader sees a clean end", async () => {
    const store = new ContentStore(tempDir());
    const data = randomBytes(3 * 1024 * 1024 + 5);
    const digest = sha(data);
    const path = await store.put(digest, chunks(data, 65536));
    const flipped = Buffer.from(data);
    flipped[2_000_000] = (flipped[2_000_000] as number) ^ 1;
    writeFileSync(path, flipped);
    let seen = 0;
    await assert.rejects(
      (async () => {
        for await (const c of store.open(digest)) seen += (c as Buffer).length;
      })(),
      (e: unknown) => e instanceof CorruptBlobError && isA3sError(e, "ECACHE") && e.removed && e.actual === sha(flipped) && e.message.includes(digest),
    );
    assert.ok(seen < data.length, "the last chunk was held back");
    assert.equal(existsSync(path), false, "the bad blob was removed");

    await store.put(digest, chunks(data));
    assert.equal((await store.verify(digest)).size, data.length);
    writeFileSync(path, data.subarray(0, 1000));
    await assert.rejects(store.readBytes(digest), (e: unknown) => isA3sError(e, "ECACHE"));
    await store.put(digest, chunks(data));
    writeFileSync(path, flipped);
    await assert.rejects(store.verify(digest, { remove: false }), (e: unknown) => e instanceof CorruptBlobError && !e.removed);
    assert.equal(existsSync(path), true, "remove: false keeps it");
  });

  it("never replaces a published blob: a second writer gets no identity, and the first writer's identity still holds", async () => {
    const store = new ContentStore(tempDir());
    const data = randomBytes(100_000);
    const digest = sha(data);
    const first = await store.putVerified(digest, chunks(data));
    const second = await store.putVerified(digest, chunks(data));
    assert.ok(first.identity);
    assert.equal(second.identity, undefined);
    const stream = await store.openVerified(digest, first.identity);
    let n = 0;
    for await (const c of stream) n += (c as Buffer).length;
    assert.equal(n, data.length);
    writeFileSync(first.path, data);
    await assert.rejects(store.openVerified(digest, first.identity), (e: unknown) => isA3sError(e, "ECONTENT") && /changed after it was verified/.test(e.message));
  });

  it("collects blobs not kept and stale temporaries, and lists the rest", async () => {
    const store = new ContentStore(tempDir());
    const a = Buffer.from("a".repeat(100));
    const b = Buffer.from("b".repeat(200));
    await store.putBytes(sha(a), a);
    await store.putBytes(sha(b), b);
    const stale = join(store.root, "tmp", "sha256-stale");
    const fresh = join(store.root, "tmp", "sha256-fresh");
    writeFileSync(stale, "x".repeat(50));
    writeFileSync(fresh, "y");
    const old = new Date(Date.now() - 24 * 3600 * 1000);
    utimesSync(stale, old, old);
    writeFileSync(join(store.root, "sha256", "not-a-digest"), "keep me");
    // This process stored both blobs, so it uses them until it lets them go.
    assert.deepEqual(await store.gc(new Set([sha(a)])), { removed: 1, bytes: 50, inUse: 1 });
    await store.releaseUses();
    const result = await store.gc(new Set([sha(a)]));
    assert.deepEqual(result, { removed: 1, bytes: 200, inUse: 0 });
    assert.deepEqual((await store.list()).map((x) => x.digest), [sha(a)]);
    assert.equal(existsSync(fresh), true, "a temporary another build may still be writing survives");
    assert.equal(existsSync(join(store.root, "sha256", "not-a-digest")), true);
  });
});
