// The content store serves only verified bytes: a cached blob corrupted on
// disk (a flipped byte, a cut on a member boundary) is found, removed and
// made again from its source, or the build fails naming the digest. Never a
// wrong rootfs with exit 0. Everything here is real: the CLI, a registry on
// loopback, files corrupted in the cache directory.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync, renameSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { isA3sError } from "../src/errors.js";
import { ContentStore } from "../src/oci/store/content-store.js";
import { readContent, type RootfsTree } from "../src/tree/index.js";
import { parseOutputSpec, writeOutputs } from "../src/outputs/write-outputs.js";
import { CLI } from "./helpers/cli.js";
import { startFaultProxy, type FaultProxy } from "./helpers/fault-proxy.js";
import { applyLayers } from "./helpers/layer-image.js";
import { RegistryPusher, startRegistry, type TestRegistry } from "./helpers/registry.js";
import { tempDir } from "./helpers/temp-dir.js";
import { makeImage, makeLayer, writeOciLayout, type TestImage, type TestLayer } from "./helpers/test-image.js";

let registry: TestRegistry;
let proxy: FaultProxy;
let image: TestImage;
let base: TestLayer;
let top: TestLayer;

before(async () => {
  registry = await startRegistry();
  base = makeLayer(
    [
      { path: "etc/os-release", content: "ID=verified-store\n" },
      { path: "bin/tool", content: "#!/bin/sh\necho tool\n", mode: 0o755 },
      { path: "usr/share/data", content: Buffer.alloc(200_000, 0x41) },
      { path: "usr/share/zz-last", content: "the last member\n" },
    ],
    "gzip",
  );
  top = makeLayer([{ path: "etc/motd", content: "hello from the top layer\n" }], "zstd");
  image = makeImage([base, top], { entrypoint: ["/bin/tool"] });
  await new RegistryPusher(registry).pushImage("safe", "v1", image);
  proxy = await startFaultProxy(registry.url);
});

after(async () => {
  await proxy.stop();
  await registry.stop();
});

/** Runs the CLI without blocking this process (the fault proxy lives here). */
function cli(args: string[], cache: string): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, A3S_CACHE_DIR: cache }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    child.on("close", (status) => resolve({ status: status ?? -1, stdout, stderr }));
  });
}

/** The file a blob has in the cache directory. */
function cached(cache: string, digest: string): string {
  return join(cache, "blobs", "sha256", digest.slice("sha256:".length));
}

/** Flips one byte of `file` at the first place `marker` occurs (or at `offset`). */
function flipByte(file: string, at: string | number): number {
  const bytes = readFileSync(file);
  const offset = typeof at === "number" ? at : bytes.indexOf(at);
  assert.ok(offset >= 0 && offset < bytes.length, `${at} not found in ${file}`);
  bytes[offset] = (bytes[offset] as number) ^ 0x20;
  writeFileSync(file, bytes);
  return offset;
}

/** Where the tar header of the member whose name contains `name` starts. */
function headerOffset(tar: Buffer, name: string): number {
  for (let pos = 0; pos + 512 <= tar.length; ) {
    const h = tar.subarray(pos, pos + 512);
    if (h.every((b) => b === 0)) break;
    const size = parseInt(h.toString("latin1", 124, 136).replace(/\0.*$/, "").trim() || "0", 8);
    if (h.toString("latin1", 0, 100).includes(name)) return pos;
    pos += 512 + Math.ceil(size / 512) * 512;
  }
  throw new Error(`no member named ${name}`);
}

const blobGets = (): string[] => proxy.log.filter((e) => e.method === "GET" && e.path.includes("/blobs/")).map((e) => e.path);

describe("a verified store: docker:// images", () => {
  const cache = tempDir();
  const build = async (out: string): Promise<{ status: number; stderr: string; root: string }> => {
    const root = join(tempDir(), out);
    const r = await cli(["build", `docker://${proxy.host}/safe:v1`, "-o", `dir:${root}`, "--no-init"], cache);
    return { status: r.status, stderr: r.stderr, root };
  };

  it("builds once, filling the cache", async () => {
    const first = await build("first");
    assert.equal(first.status, 0, first.stderr);
    for (const d of [base.diffId, top.diffId, base.digest, top.digest]) assert.ok(existsSync(cached(cache, d)), d);
  });

  it("a cached layer with one byte flipped is found, removed and decompressed again from the cached blob: the rootfs is right", async () => {
    flipByte(cached(cache, base.diffId), "ID=verified-store");
    proxy.log.length = 0;
    const again = await build("flipped");
    assert.equal(again.status, 0, again.stderr);
    assert.equal(readFileSync(join(again.root, "etc/os-release"), "utf8"), "ID=verified-store\n");
    assert.match(again.stderr, new RegExp(`warning: .*the cached uncompressed layer ${base.diffId} was corrupt and was removed; making it again`));
    assert.deepEqual(blobGets(), [], "the compressed blob was in the cache: nothing downloaded");
  });

  it("a cached layer cut on a member boundary (no entry missing from the rootfs)", async () => {
    const file = cached(cache, base.diffId);
    truncateSync(file, headerOffset(readFileSync(file), "zz-last"));
    const again = await build("cut");
    assert.equal(again.status, 0, again.stderr);
    assert.equal(readFileSync(join(again.root, "usr/share/zz-last"), "utf8"), "the last member\n");
    assert.match(again.stderr, /was corrupt and was removed/);
  });

  it("a flipped byte in the cached layer and in its cached compressed blob: downloaded again from the registry", async () => {
    flipByte(cached(cache, top.diffId), "hello from");
    flipByte(cached(cache, top.digest), Math.floor(top.size / 2));
    proxy.log.length = 0;
    const again = await build("both");
    assert.equal(again.status, 0, again.stderr);
    assert.equal(readFileSync(join(again.root, "etc/motd"), "utf8"), "hello from the top layer\n");
    assert.match(again.stderr, new RegExp(`the cached blob ${top.digest} was corrupt and was removed; fetching it again`));
    assert.deepEqual(blobGets(), [`/v2/safe/blobs/${top.digest}`]);
  });

  it("fails naming the digest when the cache is corrupt and the registry no longer has the blob", async () => {
    flipByte(cached(cache, top.diffId), "hello from");
    flipByte(cached(cache, top.digest), Math.floor(top.size / 2));
    proxy.faults = { replace: { match: /\/blobs\//, status: 404, headers: { "content-type": "application/json" }, body: Buffer.from('{"errors":[{"code":"BLOB_UNKNOWN"}]}') } };
    try {
      const again = await build("gone");
      assert.equal(again.status, 1, again.stderr);
      assert.match(again.stderr, new RegExp(top.digest));
      if (process.env.SHOW) console.log(again.stderr);
      assert.equal(existsSync(join(again.root, "etc/motd")), false, "no rootfs was published");
    } finally {
      proxy.faults = {};
    }
  });

  it("a corrupt cached manifest is fetched again", async () => {
    flipByte(cached(cache, image.manifest.digest), '"layers"');
    const again = await build("manifest");
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stderr, /warning: the cached blob .* is corrupt: .*; it was removed; fetching the manifest again/);
    assert.equal(readFileSync(join(again.root, "etc/motd"), "utf8"), "hello from the top layer\n");
  });
});

describe("a verified store: oci: layouts", () => {
  it("a corrupt cached layer is made again from the layout; a corrupt layout blob fails naming the digest and the file", async () => {
    const layout = tempDir();
    const cache = tempDir();
    writeOciLayout(layout, "v1", image.manifest, [image.config, ...image.layers]);
    const build = (out: string): Promise<{ status: number; stdout: string; stderr: string }> =>
      cli(["build", `oci:${layout}:v1`, "-o", `dir:${join(cache, out)}`, "--no-init"], cache);
    assert.equal((await build("first")).status, 0);

    flipByte(cached(cache, base.diffId), "ID=verified-store");
    const again = await build("again");
    assert.equal(again.status, 0, again.stderr);
    assert.equal(readFileSync(join(cache, "again/etc/os-release"), "utf8"), "ID=verified-store\n");
    const layoutBlob = join(layout, "blobs", "sha256", base.digest.slice("sha256:".length));
    assert.match(again.stderr, new RegExp(`corrupt and was removed; making it again from the layer's blob \\(${layoutBlob}\\)`));

    flipByte(cached(cache, base.diffId), "ID=verified-store");
    flipByte(layoutBlob, Math.floor(base.size / 2));
    const broken = await build("broken");
    assert.equal(broken.status, 1, broken.stderr);
    if (process.env.SHOW) console.log(broken.stderr);
    assert.match(broken.stderr, new RegExp(`${base.digest}.*${layoutBlob}|${layoutBlob}.*${base.digest}`));
    assert.equal(existsSync(join(cache, "broken")), false);
  });
});

describe("a verified store: the tree is bound to the file that was verified", () => {
  const tarFile = (tree: RootfsTree): { path: string; content: Parameters<typeof readContent>[0] } => {
    const inode = tree.lookup("/usr/share/data");
    assert.ok(inode?.kind === "file" && inode.content.type === "blobRange" && inode.content.verified);
    return { path: inode.content.blobPath, content: inode.content };
  };

  it("a cached layer rewritten in place after it was applied fails the output instead of reaching it", async () => {
    const { tree } = await applyLayers([base]);
    const { path, content } = tarFile(tree);
    assert.equal((await readContent(content, "/usr/share/data")).length, 200_000);
    flipByte(path, Buffer.alloc(8, 0x41).toString());
    await assert.rejects(readContent(content, "/usr/share/data"), (e: unknown) => isA3sError(e, "ECONTENT") && /changed after its digest was checked/.test(e.message));
    const out = tempDir();
    await assert.rejects(
      writeOutputs(tree, [parseOutputSpec(`tar:${join(out, "rootfs.tar")}`)], { epoch: 1_000_000_000, warn: () => {} }),
      (e: unknown) => isA3sError(e, "ECONTENT") && /changed after its digest was checked: it was modified/.test(e.message),
    );
    assert.equal(existsSync(join(out, "rootfs.tar")), false, "nothing was published");
  });

  it("a cached layer swapped for another file (same bytes, renamed over it) is refused too", async () => {
    const { tree } = await applyLayers([base]);
    const { path, content } = tarFile(tree);
    writeFileSync(`${path}.copy`, readFileSync(path));
    renameSync(`${path}.copy`, path);
    await assert.rejects(readContent(content, "/usr/share/data"), (e: unknown) => isA3sError(e, "ECONTENT") && /another file/.test(e.message));
  });
});

describe("a3s-rootfs cache verify", () => {
  it("hashes every blob, reports a bad one, removes it unless --keep, and exits 1 while any is bad", async () => {
    const cache = tempDir();
    const root = join(cache, "rootfs");
    const built = await cli(["build", `docker://${proxy.host}/safe:v1`, "-o", `dir:${root}`, "--no-init"], cache);
    assert.equal(built.status, 0, built.stderr);
    const clean = await cli(["cache", "verify", "--json"], cache);
    assert.equal(clean.status, 0, clean.stderr);
    const report = JSON.parse(clean.stdout);
    assert.equal(report.checked, (await new ContentStore(join(cache, "blobs")).list()).length);
    assert.deepEqual(report.bad, []);

    flipByte(cached(cache, top.diffId), "hello from");
    const kept = await cli(["cache", "verify", "--keep", "--json"], cache);
    assert.equal(kept.status, 1);
    const keptReport = JSON.parse(kept.stdout);
    assert.deepEqual(keptReport.bad.map((b: { digest: string; removed: boolean }) => [b.digest, b.removed]), [[top.diffId, false]]);
    assert.ok(existsSync(cached(cache, top.diffId)), "--keep removes nothing");

    const removed = await cli(["cache", "verify"], cache);
    assert.equal(removed.status, 1);
    assert.match(removed.stderr, new RegExp(`bad: the cached blob ${top.diffId} .* is corrupt: .* it was removed`));
    assert.match(removed.stdout, /1 bad, 1 removed/);
    assert.equal(existsSync(cached(cache, top.diffId)), false);

    const after = await cli(["cache", "verify"], cache);
    assert.equal(after.status, 0, after.stderr);
    assert.match(after.stdout, /all match their digests/);
  });
});
