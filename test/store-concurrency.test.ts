// One content store, many processes: a lock file per digest that a dead
// owner cannot hold for ever, downloads shared between concurrent pulls,
// and a gc that never deletes what a running process uses.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { ContentStore } from "../src/oci/store/content-store.js";
import { FileLock } from "../src/util/file-lock.js";
import { formatProcessToken, processToken } from "../src/util/process-token.js";
import { runCliAsync } from "./helpers/cli.js";
import { startFaultProxy, type FaultProxy } from "./helpers/fault-proxy.js";
import { RegistryPusher, startRegistry, type TestRegistry } from "./helpers/registry.js";
import { tempDir } from "./helpers/temp-dir.js";
import { makeImage, makeLayer, type TestImage } from "./helpers/test-image.js";

const DIST_SRC = fileURLToPath(new URL("../src/", import.meta.url));

/** A pid no Linux process can have (above the largest pid_max). */
const IMPOSSIBLE_PID = 4_194_305;

/** Starts a node child running `code` (ESM, with the dist sources at DIST), resolving once it prints "ready". */
async function child(code: string, env: NodeJS.ProcessEnv = {}): Promise<ChildProcess> {
  const file = join(tempDir(), "child.mjs");
  writeFileSync(file, code.replaceAll("DIST/", `file://${DIST_SRC}`));
  const c = spawn(process.execPath, [file], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    let out = "";
    c.stdout!.on("data", (b: Buffer) => {
      out += b.toString();
      if (out.includes("ready")) resolve();
    });
    c.once("exit", (status) => reject(new Error(`child exited with ${status} before it was ready`)));
  });
  return c;
}

async function kill(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise((r) => c.once("exit", r));
  c.kill("SIGKILL");
  await exited;
}

/** Whether `p` settles within `ms`. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let done = false;
  void p.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise((r) => setTimeout(r, ms));
  return done;
}

describe("file locks between processes", () => {
  it("a second holder waits until the first releases", async () => {
    const path = join(tempDir(), "x.lock");
    const first = await FileLock.acquire(path);
    const second = FileLock.acquire(path);
    assert.equal(await settlesWithin(second, 150), false);
    await first.release();
    await (await second).release();
    assert.equal(existsSync(path), false);
  });

  it("breaks a lock whose owner is gone: a dead pid, a reused pid (another start time), another boot", async () => {
    const me = processToken();
    for (const owner of [
      { ...me, pid: IMPOSSIBLE_PID },
      { ...me, start: String(Number(me.start) + 1) },
      { ...me, boot: "00000000-0000-0000-0000-000000000000" },
    ]) {
      const path = join(tempDir(), "stale.lock");
      writeFileSync(path, `${formatProcessToken(owner)} nonce\n`);
      const lock = await FileLock.acquire(path);
      await lock.release();
    }
  });

  it("a holder killed with SIGKILL does not block the next process", async () => {
    const path = join(tempDir(), "killed.lock");
    const holder = await child(`import { FileLock } from "DIST/util/file-lock.js";\nawait FileLock.acquire(${JSON.stringify(path)});\nconsole.log("ready");\nsetInterval(() => {}, 1000);\n`);
    try {
      let waited = false;
      const waiting = FileLock.acquire(path, { onWait: (o) => (waited = o.pid === holder.pid) });
      assert.equal(await settlesWithin(waiting, 200), false, "the live holder keeps it");
      assert.equal(waited, true, "the waiter knows whom it waits for");
      await kill(holder);
      await (await waiting).release();
    } finally {
      await kill(holder);
    }
  });
});

describe("one store, many processes", () => {
  let registry: TestRegistry;
  let proxy: FaultProxy;
  let image: TestImage;

  before(async () => {
    registry = await startRegistry();
    proxy = await startFaultProxy(registry.url);
    // Three incompressible layers, so each download takes a while and the pulls overlap.
    image = makeImage(
      [1, 2, 3].map((n) => makeLayer([{ path: `data/${n}`, content: Buffer.from(Array.from({ length: 400_000 }, (_, i) => (i * 7919 + n * 104729) % 251)) }], "gzip")),
      { entrypoint: ["/data/1"] },
    );
    await new RegistryPusher(registry).pushImage("share/app", "v1", image);
  });

  after(async () => {
    await proxy.stop();
    await registry.stop();
  });

  it("8 concurrent pulls of one reference download each blob once, and all of them get the image", async () => {
    const cache = tempDir();
    proxy.faults = { delayBlobsMs: 300 };
    const mark = proxy.log.length;
    try {
      const runs = await Promise.all(
        Array.from({ length: 8 }, () => runCliAsync(["inspect", "--list", "--json", `docker://${proxy.host}/share/app:v1`], { env: { A3S_CACHE_DIR: cache } })),
      );
      for (const r of runs) assert.equal(r.status, 0, r.stderr);
      const lists = runs.map((r) => JSON.stringify((JSON.parse(r.stdout) as { list: unknown }).list));
      assert.equal(new Set(lists).size, 1, "every process saw the same tree");
    } finally {
      proxy.faults = {};
    }
    const blobGets = proxy.log.slice(mark).filter((e) => e.method === "GET" && /\/blobs\/sha256:/.test(e.path) && e.status === 200);
    const perDigest = new Map<string, number>();
    for (const e of blobGets) {
      const d = /sha256:[0-9a-f]{64}/.exec(e.path)![0];
      perDigest.set(d, (perDigest.get(d) ?? 0) + 1);
    }
    for (const b of [image.config, ...image.layers]) assert.equal(perDigest.get(b.digest), 1, `${b.digest} was downloaded ${perDigest.get(b.digest) ?? 0} times`);
    // Nothing half-written, no lock left behind, no use record of a finished process.
    const blobs = join(cache, "blobs");
    const list = (d: string): string[] => (existsSync(d) ? readdirSync(d) : []);
    assert.deepEqual(list(join(blobs, "tmp")), []);
    assert.deepEqual(list(join(blobs, "locks")).filter((n) => !n.includes(".new-")), []);
    assert.deepEqual(list(join(blobs, "uses")), []);
  });

  it("cache gc keeps every blob a running process uses, even with --all, and collects them once it is gone", async () => {
    const cache = tempDir();
    const env = { A3S_CACHE_DIR: cache };
    const built = await runCliAsync(["inspect", "--json", `docker://${registry.host}/share/app:v1`], { env });
    assert.equal(built.status, 0, built.stderr);
    const store = new ContentStore(join(cache, "blobs"));
    const digests = (await store.list()).map((b) => b.digest);
    assert.ok(digests.length >= 7, "manifest, config, 3 blobs, 3 uncompressed layers");
    // A process that uses two of them (it asked the store for them) and keeps running.
    const used = [image.layers[0]!.digest, image.layers[1]!.diffId];
    const user = await child(
      `import { ContentStore } from "DIST/oci/store/content-store.js";\nconst s = new ContentStore();\nfor (const d of ${JSON.stringify(used)}) if (!(await s.has(d))) process.exit(3);\nconsole.log("ready");\nsetInterval(() => {}, 1000);\n`,
      env,
    );
    try {
      const gc = await runCliAsync(["cache", "gc", "--all", "--json"], { env });
      assert.equal(gc.status, 0, gc.stderr);
      assert.equal((JSON.parse(gc.stdout) as { inUse: number }).inUse, 2);
      assert.deepEqual((await store.list()).map((b) => b.digest).sort(), [...used].sort());
    } finally {
      await kill(user);
    }
    // Killed: its record names a process that is gone, so the next gc is free to collect.
    const again = await runCliAsync(["cache", "gc", "--all", "--json"], { env });
    // The CLI's own code cache (cli-code-cache.test.ts covers its gc) is left out.
    const { codeCaches: _codeCaches, ...second } = JSON.parse(again.stdout) as { bytes: number; codeCaches: unknown };
    assert.deepEqual(second, { forgotten: 0, removed: 2, bytes: second.bytes, inUse: 0, warmTemplates: { removed: 0, bytes: 0 }, builds: { removed: 0, bytes: 0 } });
    assert.deepEqual(await store.list(), []);
    assert.deepEqual(readdirSync(join(cache, "blobs", "uses")), [], "the dead process's use record was removed");
  });

  it("gc deletes a blob only under its use lock, so a process recording its use is never overtaken", async () => {
    const store = new ContentStore(tempDir());
    const data = Buffer.from("locked blob");
    const digest = `sha256:${(await import("node:crypto")).createHash("sha256").update(data).digest("hex")}`;
    await store.putBytes(digest, data);
    await store.releaseUses();
    const lock = await FileLock.acquire(join(store.root, "locks", `sha256-${digest.slice(7)}.use`));
    const gc = store.gc(new Set());
    assert.equal(await settlesWithin(gc, 200), false, "gc waits for the digest's use lock");
    await lock.release();
    assert.deepEqual(await gc, { removed: 1, bytes: data.length, inUse: 0 });
  });
});
