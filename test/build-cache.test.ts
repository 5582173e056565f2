// The build cache: a repeated build copies its outputs from the cache,
// verified, instead of building them; every input that changes the output
// changes the key; a corrupted entry is found, discarded and rebuilt; gc
// keeps the cache under its cap, least recently used first.
import { execFileSync } from "node:child_process";
import assert from "node:assert/strict";
import { chmodSync, linkSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { RootfsBuilder, type BuildResult } from "../src/builder/rootfs-builder.js";
import { BuildCache } from "../src/outputs/build-cache.js";
import type { OutputFormat } from "../src/outputs/output.js";
import { sha256File } from "./helpers/image-test-kit.js";
import { compileTestBinary } from "./helpers/static-binary.js";
import { tempDir } from "./helpers/temp-dir.js";

const agent = compileTestBinary();
const otherAgent = compileTestBinary({ exitCode: 3 });

interface Variant {
  agent?: string;
  env?: string[];
  epoch?: number;
  verity?: boolean;
  outputs?: [OutputFormat, string][];
}

async function build(cache: BuildCache, out: string, v: Variant = {}): Promise<BuildResult> {
  const b = new RootfsBuilder().withAgentBinary(v.agent ?? agent).withEpoch(v.epoch ?? 1_700_000_000).withBuildCache(cache).withForce().onWarning(() => {});
  for (const [format, name] of v.outputs ?? [["cpio", "rootfs.cpio.gz"], ["ext4", "rootfs.ext4"]]) b.withOutput(format, join(out, name));
  if (v.env) b.withAgentEnv(v.env);
  if (v.verity) b.withVerity();
  return b.build();
}

const fromCache = (r: BuildResult): boolean[] => r.outputs.map((o) => o.fromCache === true);

/** A fresh cache and output directory, and a first build of r.cpio into them. */
async function coldCpioBuild(): Promise<{ root: string; cache: BuildCache; out: string; path: string; cold: BuildResult }> {
  const root = tempDir("a3s-build-cache-");
  const cache = new BuildCache(root);
  const out = tempDir("a3s-cache-out-");
  const cold = await build(cache, out, { outputs: [["cpio", "r.cpio"]] });
  return { root, cache, out, path: join(out, "r.cpio"), cold };
}

describe("build cache", () => {
  it("a repeated build copies byte-identical outputs from the cache, as files of their own", async () => {
    const cache = new BuildCache(tempDir("a3s-build-cache-"));
    const out = tempDir("a3s-cache-out-");
    const cold = await build(cache, out);
    assert.deepEqual(fromCache(cold), [false, false]);
    assert.ok(cold.tree);
    const coldHashes = cold.outputs.map((o) => sha256File(o.path));
    assert.deepEqual(coldHashes, cold.outputs.map((o) => o.sha256));

    const warm = await build(cache, out);
    assert.deepEqual(fromCache(warm), [true, true]);
    assert.equal(warm.tree, undefined, "nothing was built");
    assert.equal(warm.entries, cold.entries);
    assert.deepEqual(warm.outputs.map((o) => sha256File(o.path)), coldHashes);
    assert.deepEqual(warm.outputs.map((o) => o.sha256), coldHashes);
    // The user's file is not the cached inode: writing to it cannot change the cache.
    for (const o of warm.outputs) {
      assert.equal(statSync(o.path).nlink, 1, o.path);
      writeFileSync(o.path, "changed by the user");
    }
    const again = await build(cache, out);
    assert.deepEqual(fromCache(again), [true, true]);
    assert.deepEqual(again.outputs.map((o) => sha256File(o.path)), coldHashes);
  });

  it("misses when the agent, the guest config, the epoch, a format option or verity changes", async () => {
    const cache = new BuildCache(tempDir("a3s-build-cache-"));
    const out = tempDir("a3s-cache-out-");
    const base = await build(cache, out, { outputs: [["cpio", "r.cpio.gz"]] });
    const hashOf = (r: BuildResult): string => r.outputs[0]?.sha256 ?? "";
    const changed: [string, Variant][] = [
      ["agent", { agent: otherAgent }],
      ["config", { env: ["MODE=other"] }],
      ["epoch", { epoch: 1_700_000_001 }],
      ["compression", { outputs: [["cpio", "r.cpio.zst"]] }],
    ];
    for (const [what, v] of changed) {
      const r = await build(cache, out, { outputs: [["cpio", "r.cpio.gz"]], ...v });
      assert.deepEqual(fromCache(r), [false], `${what} changed: a miss`);
      assert.notEqual(hashOf(r), hashOf(base), `${what} changed the output`);
      assert.deepEqual(fromCache(await build(cache, out, { outputs: [["cpio", "r.cpio.gz"]], ...v })), [true], `${what}: the second build hits`);
    }
    const plain = await build(cache, out, { outputs: [["ext4", "r.ext4"]] });
    const verity = await build(cache, out, { outputs: [["ext4", "r.ext4"]], verity: true });
    assert.deepEqual([...fromCache(plain), ...fromCache(verity)], [false, false]);
    const verityAgain = await build(cache, out, { outputs: [["ext4", "r.ext4"]], verity: true });
    assert.deepEqual(fromCache(verityAgain), [true]);
    assert.deepEqual(verityAgain.outputs[0]?.verity, verity.outputs[0]?.verity);
    const record = JSON.parse(readFileSync(join(out, "r.ext4.verity.json"), "utf8")) as { rootHash: string };
    assert.equal(record.rootHash, verity.outputs[0]?.verity?.rootHash);
  });

  it("a corrupted entry is detected, discarded and rebuilt, with a warning", async () => {
    const root = tempDir("a3s-build-cache-");
    const cache = new BuildCache(root);
    const out = tempDir("a3s-cache-out-");
    const cold = await build(cache, out, { outputs: [["cpio", "r.cpio"]] });
    const [key] = readdirSync(root).filter((n) => !n.startsWith("."));
    assert.ok(key);
    const cached = join(root, key, "output");
    chmodSync(cached, 0o644);
    const bytes = readFileSync(cached);
    const middle = bytes.length >> 1;
    bytes[middle] = (bytes[middle] ?? 0) ^ 0xff;
    writeFileSync(cached, bytes);

    const warnings: string[] = [];
    const b = new RootfsBuilder().withAgentBinary(agent).withEpoch(1_700_000_000).withBuildCache(cache).withForce().onWarning((w) => warnings.push(w));
    // Another path: r.cpio itself holds the intact bytes, which a rebuild there keeps without reading the entry.
    const rebuilt = await b.withOutput("cpio", join(out, "r2.cpio")).build();
    assert.deepEqual(fromCache(rebuilt), [false]);
    assert.equal(sha256File(join(out, "r2.cpio")), cold.outputs[0]?.sha256);
    assert.ok(warnings.some((w) => /did not match its recorded SHA-256; it was discarded/.test(w)), warnings.join("\n"));
    // The rebuilt output went back into the cache, intact.
    assert.equal(sha256File(join(root, key, "output")), cold.outputs[0]?.sha256);
    assert.deepEqual(fromCache(await build(cache, out, { outputs: [["cpio", "r3.cpio"]] })), [true]);
  });

  it("a rebuild into the path that holds the cached bytes keeps that file, checked and given a fresh time; a hard link to the cache's file is replaced by a copy", async () => {
    const { root, cache, out, path, cold } = await coldCpioBuild();
    const before = statSync(path);
    utimesSync(path, 1_000_000, 1_000_000);
    const warm = await build(cache, out, { outputs: [["cpio", "r.cpio"]] });
    assert.deepEqual(fromCache(warm), [true]);
    const kept = statSync(path);
    assert.equal(kept.ino, before.ino, "the same file, not a copy of it");
    assert.ok(kept.mtimeMs > 1_000_000_000, `mtime ${kept.mtimeMs}`);
    assert.equal(sha256File(path), cold.outputs[0]?.sha256);

    // Someone made the output a hard link to the cache's file: it must become the user's own copy.
    const [key] = readdirSync(root).filter((n) => !n.startsWith("."));
    rmSync(path);
    linkSync(join(root, key as string, "output"), path);
    const relinked = await build(cache, out, { outputs: [["cpio", "r.cpio"]] });
    assert.deepEqual(fromCache(relinked), [true]);
    assert.equal(statSync(path).nlink, 1);
    assert.notEqual(statSync(path).ino, statSync(join(root, key as string, "output")).ino);
    assert.equal(sha256File(path), cold.outputs[0]?.sha256);
  });

  it("a rebuild into a path whose file was changed in place (same size, other bytes) replaces it with the cached bytes", async () => {
    const { cache, out, path, cold } = await coldCpioBuild();
    const bytes = readFileSync(path);
    const at = bytes.length >> 1;
    bytes[at] = (bytes[at] as number) ^ 0xff;
    writeFileSync(path, bytes);
    const changed = statSync(path);
    assert.notEqual(sha256File(path), cold.outputs[0]?.sha256);

    const warm = await build(cache, out, { outputs: [["cpio", "r.cpio"]] });
    assert.deepEqual(fromCache(warm), [true]);
    assert.equal(sha256File(path), cold.outputs[0]?.sha256, "the changed file must not be kept");
    assert.notEqual(statSync(path).ino, changed.ino, "a new file was published over it");
  });

  it("a rebuild into a path whose file was changed in place with its size and mtime put back still replaces it (its ctime gives it away)", async () => {
    const { cache, out, path, cold } = await coldCpioBuild();
    // The cold build recorded the published file's identity: a rebuild that finds it unchanged keeps it without reading it.
    const before = statSync(path, { bigint: true });
    const bytes = readFileSync(path);
    const at = bytes.length >> 1;
    bytes[at] = (bytes[at] as number) ^ 0xff;
    writeFileSync(path, bytes);
    // The mtime to the nanosecond (utimes from Node rounds it): only the ctime tells.
    const ns = before.mtimeNs % 1_000_000_000n;
    execFileSync("touch", ["-m", "-d", `@${before.mtimeNs / 1_000_000_000n}.${String(ns).padStart(9, "0")}`, path]);
    const changed = statSync(path, { bigint: true });
    assert.equal(changed.mtimeNs, before.mtimeNs);
    assert.equal(changed.size, before.size);
    assert.notEqual(changed.ctimeNs, before.ctimeNs);

    const warm = await build(cache, out, { outputs: [["cpio", "r.cpio"]] });
    assert.deepEqual(fromCache(warm), [true]);
    assert.equal(sha256File(path), cold.outputs[0]?.sha256, "the changed file must not be kept");

    // Kept twice over, unchanged: the same file, the cached bytes.
    const kept = statSync(path);
    assert.deepEqual(fromCache(await build(cache, out, { outputs: [["cpio", "r.cpio"]] })), [true]);
    assert.equal(statSync(path).ino, kept.ino);
    assert.equal(sha256File(path), cold.outputs[0]?.sha256);
  });

  it("stays under its cap, least recently used first, and gc --all empties it", async () => {
    const root = tempDir("a3s-build-cache-");
    const out = tempDir("a3s-cache-out-");
    const unbounded = new BuildCache(root);
    const sizes: number[] = [];
    for (const epoch of [1, 2, 3]) {
      const r = await build(unbounded, out, { epoch, outputs: [["cpio", `r${epoch}.cpio`]] });
      sizes.push(r.outputs[0]?.bytes ?? 0);
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal((await unbounded.list()).length, 3);
    // Use the first one again: now the second is the least recently used.
    assert.deepEqual(fromCache(await build(unbounded, out, { epoch: 1, outputs: [["cpio", "r1.cpio"]] })), [true]);
    const cap = Math.max(...sizes) * 2 + 1;
    const bounded = new BuildCache(root, cap);
    const gc = await bounded.gc();
    assert.equal(gc.removed, 1);
    const left = await bounded.list();
    assert.ok(left.reduce((n, e) => n + e.diskBytes, 0) <= cap);
    assert.deepEqual(fromCache(await build(bounded, out, { epoch: 2, outputs: [["cpio", "r2.cpio"]] })), [false], "the least recently used one went");
    // Storing that one again trimmed the cache back under its cap.
    assert.ok((await bounded.list()).reduce((n, e) => n + e.diskBytes, 0) <= cap);
    assert.deepEqual(await bounded.gc({ all: true }).then((r) => r.removed > 0), true);
    assert.deepEqual(await bounded.list(), []);
  });
});
