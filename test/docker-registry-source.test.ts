import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, lstatSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { isA3sError } from "../src/errors.js";
import { findIgzip } from "../src/formats/compression/index.js";
import { IGZIP_FROM_BYTES } from "../src/oci/layers/layer-decompress.js";
import { ContentStore } from "../src/oci/store/content-store.js";
import { readContent } from "../src/tree/index.js";
import { ImageRecords } from "../src/oci/store/image-records.js";
import { dockerRegistrySource } from "../src/sources/docker-registry-source.js";
import { CLI } from "./helpers/cli.js";
import { startFaultProxy, type FaultProxy } from "./helpers/fault-proxy.js";
import { RegistryPusher, selfSignedCertificate, startRegistry, type TestRegistry } from "./helpers/registry.js";
import { tempDir } from "./helpers/temp-dir.js";
import { makeImage, makeIndex, makeLayer, writeOciLayout, type TestImage } from "./helpers/test-image.js";

let registry: TestRegistry;
let basic: TestRegistry;
let proxy: FaultProxy;
let app: TestImage;
let big: TestImage;
/** One gzip layer large enough for igzip (random bytes gzip cannot shrink), with a small file beside them. */
let large: TestImage;
const noise = randomBytes(IGZIP_FROM_BYTES * 3);

before(async () => {
  registry = await startRegistry();
  const base = makeLayer(
    [
      { path: "etc/os-release", content: "ID=a3stest\n" },
      { path: "usr/share/doc/readme", content: "docs\n" },
      { path: "bin/tool", content: "#!/bin/sh\necho tool\n", mode: 0o755 },
    ],
    "gzip",
  );
  const top = makeLayer(
    [
      { path: "usr/share/.wh.doc", content: "" },
      { path: "etc/motd", content: "hello\n" },
    ],
    "zstd",
  );
  app = makeImage([base, top], { entrypoint: ["/bin/tool"], env: ["MODE=test"] });
  big = makeImage(
    [1, 2, 3, 4].map((n) => makeLayer([{ path: `data/${n}`, content: Buffer.from(Array.from({ length: 400_000 }, (_, i) => (i * 31 + n) % 253)) }], "none")),
    { entrypoint: ["/data/1"] },
  );
  const push = new RegistryPusher(registry);
  await push.pushImage("app", "v1", app);
  await push.pushImage("big", "v1", big);
  large = makeImage([makeLayer([{ path: "data/noise", content: noise }, { path: "etc/motd", content: "large\n" }], "gzip")], { entrypoint: ["/data/noise"] });
  await push.pushImage("large", "v1", large);
  basic = await startRegistry({ storage: registry.storage, auth: { htpasswd: { bob: "pw" } } });
  proxy = await startFaultProxy(registry.url);
});

after(async () => {
  await proxy.stop();
  await basic.stop();
  await registry.stop();
});

/** Runs the CLI without blocking this process (the fault proxy lives here). */
function cli(args: string[], env: Record<string, string>): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    child.on("close", (status) => resolve({ status: status ?? -1, stdout, stderr }));
  });
}

describe("docker:// source", () => {
  it("builds a rootfs from a registry image with whiteouts applied, and a rebuild downloads nothing", async () => {
    const cache = tempDir();
    const out = tempDir();
    proxy.faults = {};
    proxy.log.length = 0;
    const first = await cli(["build", `docker://${proxy.host}/app:v1`, "-o", `dir:${join(out, "rootfs")}`, "--json"], { A3S_CACHE_DIR: cache });
    assert.equal(first.status, 0, first.stderr);
    const report = JSON.parse(first.stdout);
    assert.deepEqual(report.sourceReport, {
      reference: `${proxy.host}/app:v1`,
      manifestDigest: app.manifest.digest,
      platform: "linux/amd64",
      layers: 2,
      downloadedBytes: app.config.size + app.layers[0]!.size + app.layers[1]!.size,
      requests: 5,
    });
    const root = join(out, "rootfs");
    assert.equal(readFileSync(join(root, "etc/os-release"), "utf8"), "ID=a3stest\n");
    assert.equal(readFileSync(join(root, "etc/motd"), "utf8"), "hello\n");
    assert.equal(existsSync(join(root, "usr/share/doc")), false, "the whiteout hid the lower layer's directory");
    assert.equal(existsSync(join(root, "usr/share/.wh.doc")), false, "no whiteout survives");
    assert.equal(lstatSync(join(root, "bin/tool")).mode & 0o7777, 0o755);
    const guest = readFileSync(join(root, "etc/a3s/guest.conf"), "utf8");
    assert.match(guest, /\/bin\/tool/);
    assert.match(guest, /MODE=test/);

    proxy.log.length = 0;
    const second = await cli(["build", `docker://${proxy.host}/app:v1`, "-o", `dir:${join(out, "again")}`, "--json"], { A3S_CACHE_DIR: cache });
    assert.equal(second.status, 0, second.stderr);
    assert.equal(JSON.parse(second.stdout).sourceReport.downloadedBytes, 0);
    assert.deepEqual(
      proxy.log.map((e) => `${e.method} ${e.path}`),
      [`HEAD /v2/app/manifests/v1`],
    );
    assert.equal(readFileSync(join(out, "again/etc/motd"), "utf8"), "hello\n");
  });

  it("pulls a multi-architecture image that skopeo pushed, for the --platform asked", async () => {
    const layoutDir = tempDir();
    const amd = makeImage([makeLayer([{ path: "etc/arch", content: "amd64\n" }, { path: "bin/agent", content: "#!/bin/sh\n", mode: 0o755 }], "gzip")], {
      entrypoint: ["/bin/agent"],
    });
    const arm = makeImage([makeLayer([{ path: "etc/arch", content: "arm64\n" }, { path: "bin/agent", content: "#!/bin/sh\n", mode: 0o755 }], "zstd")], {
      architecture: "arm64",
      variant: "v8",
      entrypoint: ["/bin/agent"],
    });
    const index = makeIndex([
      { manifest: amd.manifest, platform: { os: "linux", architecture: "amd64" } },
      { manifest: arm.manifest, platform: { os: "linux", architecture: "arm64", variant: "v8" } },
    ]);
    writeOciLayout(layoutDir, "v1", index, [amd, arm].flatMap((i) => [i.manifest, i.config, ...i.layers]));
    await promisify(execFile)("skopeo", ["copy", "--all", "--quiet", "--dest-tls-verify=false", `oci:${layoutDir}:v1`, `docker://${registry.host}/skopeo/multi:v1`]);

    const out = tempDir();
    const r = await cli(["build", `docker://${registry.host}/skopeo/multi:v1`, "--platform", "linux/arm64", "-o", `dir:${join(out, "rootfs")}`, "--json"], {
      A3S_CACHE_DIR: tempDir(),
    });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(join(out, "rootfs/etc/arch"), "utf8"), "arm64\n");
    const report = JSON.parse(r.stdout).sourceReport;
    assert.equal(report.platform, "linux/arm64/v8");
    assert.equal(report.indexDigest, index.digest);

    const wrong = await cli(["build", `docker://${registry.host}/skopeo/multi:v1`, "--platform", "linux/riscv64", "-o", `dir:${join(out, "no")}`], {
      A3S_CACHE_DIR: tempDir(),
    });
    assert.equal(wrong.status, 1);
    assert.match(wrong.stderr, /has no image for linux\/riscv64/);
    assert.match(wrong.stderr, /hint: it offers linux\/amd64, linux\/arm64/);
  });

  it("takes --creds for a registry that needs a login", async () => {
    const out = tempDir();
    const env = { A3S_CACHE_DIR: tempDir(), DOCKER_CONFIG: tempDir() };
    const anon = await cli(["build", `docker://${basic.host}/app:v1`, "-o", `dir:${join(out, "a")}`], env);
    assert.equal(anon.status, 1);
    assert.match(anon.stderr, /refused an anonymous pull/);
    assert.match(anon.stderr, /hint: .*--creds USER:PASSWORD/);
    const authed = await cli(["build", `docker://${basic.host}/app:v1`, "--creds", "bob:pw", "-o", `dir:${join(out, "b")}`], env);
    assert.equal(authed.status, 0, authed.stderr);
    assert.equal(readFileSync(join(out, "b/etc/motd"), "utf8"), "hello\n");
  });

  it("publishes nothing when a layer's digest does not match, and leaves no temporary in the cache", async () => {
    const cache = tempDir();
    const out = tempDir();
    proxy.faults = { corrupt: { match: new RegExp(big.layers[1]!.digest), times: 1 }, delayBlobsMs: 50 };
    const r = await cli(["build", `docker://${proxy.host}/big:v1`, "-o", `dir:${join(out, "rootfs")}`], { A3S_CACHE_DIR: cache });
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`digest mismatch: expected ${big.layers[1]!.digest}`));
    assert.deepEqual(readdirSync(out), [], "no output, not even a partial one");
    assert.deepEqual(readdirSync(join(cache, "blobs", "tmp")), []);
    const store = new ContentStore(join(cache, "blobs"));
    assert.equal(await store.has(big.layers[1]!.digest), false);
    assert.equal(existsSync(join(cache, "images")), false, "a failed build records no image");
  });

  it("a layer streamed while it downloads is refused on a bad digest, and a failing layer stops the other downloads", async () => {
    // Layer 1 is decompressed as it arrives: its corruption must still fail the build, with nothing stored.
    const cache = tempDir();
    proxy.faults = { corrupt: { match: new RegExp(big.layers[0]!.digest), times: 1 } };
    const r = await cli(["build", `docker://${proxy.host}/big:v1`, "-o", `dir:${join(cache, "out")}`], { A3S_CACHE_DIR: cache });
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`digest mismatch: expected ${big.layers[0]!.digest}`));
    assert.equal(existsSync(join(cache, "out")), false);
    assert.deepEqual(readdirSync(join(cache, "blobs", "tmp")), []);

    // A layer over the size cap fails while the others are still downloading: they stop, and leave nothing.
    proxy.faults = { delayBlobsMs: 200 };
    const store = new ContentStore(tempDir());
    const src = dockerRegistrySource(`//${proxy.host}/big:v1`, { store, records: false, limits: { maxLayerBytes: 100_000 } });
    await assert.rejects(src.load({ epoch: 0, warn: () => {}, progress: () => {} }), (e: unknown) => isA3sError(e) && /100000|limit/i.test(e.message));
    // Every download has settled (finished or stopped) before load() rejects: no temporary is left being written.
    assert.deepEqual(readdirSync(join(store.root, "tmp")), []);
  });

  /** Loads `//HOST/large:v1` into `store` with TMPDIR `tmp` (where the decoder's FIFO lives). */
  async function loadLarge(store: ContentStore, tmp: string, progress: (m: string) => void = () => {}): ReturnType<ReturnType<typeof dockerRegistrySource>["load"]> {
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = tmp;
    try {
      return await dockerRegistrySource(`//${proxy.host}/large:v1`, { store, records: false }).load({ epoch: 0, warn: () => {}, progress });
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    }
  }
  const noIgzip = !findIgzip() && "igzip (Debian package isal) or prlimit is not installed";

  it("decodes a large gzip layer with igzip as it downloads, through a download cut and resumed, and leaves nothing behind", { skip: noIgzip }, async () => {
    const layer = large.layers[0]!;
    assert.ok(layer.size >= IGZIP_FROM_BYTES);
    // Twice: the config is the first blob fetched, the layer the second.
    proxy.faults = { cutBlobs: { fraction: 0.5, times: 2 } };
    proxy.log.length = 0;
    const store = new ContentStore(tempDir());
    const tmp = tempDir();
    const said: string[] = [];
    const { tree } = await loadLarge(store, tmp, (m) => said.push(m));
    assert.ok(said.some((m) => /decompressing \(gzip, with igzip\) as it downloads/.test(m)), said.join("\n"));
    assert.ok(proxy.log.some((e) => e.range !== undefined && e.path.includes(layer.digest)), `the layer's download was resumed: ${JSON.stringify(proxy.log)}`);
    const file = tree.lookup("/data/noise", false);
    assert.equal(file?.kind, "file");
    assert.ok((await readContent(file.content, "/data/noise")).equals(noise));
    assert.ok(await store.has(layer.digest), "the blob is stored, verified");
    assert.deepEqual(readdirSync(join(store.root, "tmp")), []);
    assert.deepEqual(readdirSync(tmp), [], "the FIFO's directory is removed");
  });

  it("refuses a layer decoded as it downloads with a byte flipped, with the blob's digest mismatch, and stores nothing", { skip: noIgzip }, async () => {
    const layer = large.layers[0]!;
    // The last byte (the gzip trailer: found at the end, where the digest is
    // checked too), and the first (the gzip magic: refused as not gzip long
    // before the download ends): the download's own verdict is the error.
    for (const at of [undefined, 0]) {
      proxy.faults = { corrupt: { match: new RegExp(layer.digest), times: 1, ...(at === undefined ? {} : { at }) } };
      const store = new ContentStore(tempDir());
      const tmp = tempDir();
      await assert.rejects(loadLarge(store, tmp), (e: unknown) => isA3sError(e, "EDIGEST") && e.subject === layer.digest);
      assert.equal(await store.has(layer.digest), false);
      assert.equal(await store.has(layer.diffId), false);
      assert.deepEqual(readdirSync(join(store.root, "tmp")), []);
      assert.deepEqual(readdirSync(tmp), [], "the FIFO's directory is removed");
    }
  });

  it("reports per-layer download progress to the builder, and none on a non-TTY stderr", async () => {
    const messages: string[] = [];
    const src = dockerRegistrySource(`//${registry.host}/app:v1`, { store: new ContentStore(tempDir()), records: false });
    const result = await src.load({ epoch: 0, warn: () => {}, progress: (m) => messages.push(m) });
    assert.ok(result.tree.lookup("/etc/motd"));
    assert.ok(messages.some((m) => /^layer 1\/2 sha256:[0-9a-f]{12}: downloading /.test(m)), messages.join("\n"));
    assert.ok(messages.some((m) => /^layer 2\/2 sha256:[0-9a-f]{12}: downloaded /.test(m)), messages.join("\n"));
    const quiet = await cli(["build", `docker://${registry.host}/app:v1`, "-o", `dir:${join(tempDir(), "r")}`], { A3S_CACHE_DIR: tempDir() });
    assert.equal(quiet.status, 0, quiet.stderr);
    assert.equal(quiet.stderr, "");
  });

  it("pulls over TLS from a registry whose CA is given in NODE_EXTRA_CA_CERTS", async () => {
    const tls = selfSignedCertificate(tempDir());
    const secure = await startRegistry({ storage: registry.storage, tls });
    try {
      const out = tempDir();
      const r = await cli(["build", `docker://${secure.host}/app:v1`, "-o", `dir:${join(out, "rootfs")}`], {
        A3S_CACHE_DIR: tempDir(),
        NODE_EXTRA_CA_CERTS: tls.certPath,
      });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(readFileSync(join(out, "rootfs/etc/motd"), "utf8"), "hello\n");
    } finally {
      await secure.stop();
    }
  });

  it("refuses a malformed docker:// spec with a usage error", () => {
    assert.throws(() => dockerRegistrySource("alpine"), (e: unknown) => isA3sError(e, "EUSAGE") && /docker:\/\/REFERENCE/.test(e.message));
    assert.throws(() => dockerRegistrySource("//Bad Name"), (e: unknown) => isA3sError(e, "EREFERENCE"));
  });
});

describe("a3s-rootfs cache", () => {
  it("lists the images a build used, keeps their blobs on gc, and --all empties the cache", async () => {
    const cache = tempDir();
    const env = { A3S_CACHE_DIR: cache };
    const built = await cli(["build", `docker://${registry.host}/app:v1`, "-o", `dir:${join(tempDir(), "r")}`], env);
    assert.equal(built.status, 0, built.stderr);
    const ls = await cli(["cache", "ls", "--json"], env);
    assert.equal(ls.status, 0, ls.stderr);
    const listing = JSON.parse(ls.stdout);
    assert.equal(listing.images.length, 1);
    assert.equal(listing.images[0].reference, `${registry.host}/app:v1`);
    assert.equal(listing.images[0].manifestDigest, app.manifest.digest);
    // manifest, config, 2 layer blobs, 2 uncompressed layers
    assert.equal(listing.blobs, 6);

    const records = await new ImageRecords(join(cache, "images")).list();
    assert.equal(records[0]!.digests.length, 6);

    const gc = await cli(["cache", "gc", "--json"], env);
    // The CLI's own code cache (cli-code-cache.test.ts covers its gc) is left out.
    const { codeCaches: _codeCaches, ...kept } = JSON.parse(gc.stdout) as Record<string, unknown>;
    assert.deepEqual(kept, { forgotten: 0, removed: 0, bytes: 0, inUse: 0, warmTemplates: { removed: 0, bytes: 0 }, builds: { removed: 0, bytes: 0 } });
    const all = await cli(["cache", "gc", "--all", "--json"], env);
    const result = JSON.parse(all.stdout);
    assert.equal(result.forgotten, 1);
    assert.equal(result.removed, 6);
    assert.deepEqual(await new ContentStore(join(cache, "blobs")).list(), []);
  });
});
