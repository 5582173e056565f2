// Boot images as OCI artifacts: `-o FORMAT:docker://REF` pushes one,
// `inspect`/`run docker://REF` pull it into the verified store. Artifacts
// come from a registry and are untrusted: each attack on the pull side has
// a test here, served by a real registry through a proxy that can replace
// the manifest with a crafted one.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { isA3sError } from "../src/errors.js";
import { detectFileFormat } from "../src/formats/detect.js";
import {
  A3S_ROOTFS_ARTIFACT_TYPE,
  A3S_ROOTFS_CONFIG,
  A3S_ROOTFS_CPIO,
  A3S_ROOTFS_CPIO_GZIP,
  A3S_ROOTFS_CPIO_ZSTD,
  A3S_ROOTFS_EROFS,
  OCI_LAYER_TAR,
  OCI_MANIFEST,
} from "../src/oci/media-types.js";
import { parsePlatform } from "../src/oci/platform.js";
import { parseReference } from "../src/oci/reference.js";
import { pullBootImage } from "../src/oci/registry/boot-image-pull.js";
import { RegistryClient, type RegistryClientOptions } from "../src/oci/registry/client.js";
import { pushImage } from "../src/oci/registry/push.js";
import { rootfsArtifact, VERITY_ROOT_HASH_ANNOTATION, type ArtifactVerity } from "../src/oci/rootfs-artifact.js";
import { ContentStore } from "../src/oci/store/content-store.js";
import { erofsOutput, squashfsOutput } from "../src/outputs/registry.js";
import { bytesContent, RootfsTree } from "../src/tree/index.js";
import { resolveBootTarget } from "../src/cli/boot-reference.js";
import { runCliAsync } from "./helpers/cli.js";
import { startFaultProxy, type FaultProxy } from "./helpers/fault-proxy.js";
import { patternBytes } from "./helpers/image-sample.js";
import { RegistryPusher, startRegistry, type TestRegistry } from "./helpers/registry.js";
import { compileTestBinary } from "./helpers/static-binary.js";
import { tempDir } from "./helpers/temp-dir.js";
import { blobOf, type TestBlob } from "./helpers/test-image.js";

let registry: TestRegistry;
let proxy: FaultProxy;
let pusher: RegistryPusher;
/** A real erofs image and a real squashfs of one small tree, and the config an erofs artifact has. */
let erofs: TestBlob;
let squashfs: TestBlob;
let config: TestBlob;
const stops: (() => Promise<void>)[] = [];
const AMD64 = parsePlatform("linux/amd64");

before(async () => {
  registry = await startRegistry();
  stops.push(registry.stop);
  proxy = await startFaultProxy(registry.url);
  stops.push(proxy.stop);
  pusher = new RegistryPusher(registry);
  const dir = tempDir();
  const tree = new RootfsTree({ epoch: 0 });
  tree.addDirectory("/", { mtime: 0 });
  tree.addFile("/etc/motd", bytesContent("crafted\n"), { mtime: 0 });
  tree.addFile("/data/blob", bytesContent(patternBytes(50_000, 3)), { mtime: 0 });
  const ctx = { epoch: 0, warn: () => undefined };
  await erofsOutput.write(tree, { tmp: join(dir, "a.erofs"), final: join(dir, "a.erofs") }, ctx);
  await squashfsOutput.write(tree, { tmp: join(dir, "a.sqfs"), final: join(dir, "a.sqfs") }, ctx);
  erofs = blobOf(readFileSync(join(dir, "a.erofs")), A3S_ROOTFS_EROFS);
  squashfs = blobOf(readFileSync(join(dir, "a.sqfs")), A3S_ROOTFS_EROFS);
  config = blobOf(JSON.stringify({ architecture: "amd64", os: "linux", format: "erofs", layoutVersion: 1 }), A3S_ROOTFS_CONFIG);
  for (const b of [erofs, squashfs, config]) await pusher.pushBlob("evil/box", b);
});

after(async () => {
  for (const stop of stops.reverse()) await stop();
});

function client(extra: RegistryClientOptions = {}): RegistryClient {
  return new RegistryClient({ store: new ContentStore(tempDir()), credentialLookup: async () => undefined, retry: { baseDelayMs: 10, maxDelayMs: 50 }, ...extra });
}

const code = (c: string, text?: RegExp) => (e: unknown) => {
  assert.ok(isA3sError(e, c), `expected ${c}, got ${String((e as Error)?.stack ?? e)}`);
  if (text) assert.match(e.message + " " + (e.hint ?? ""), text);
  return true;
};

const desc = (b: TestBlob, mediaType = b.mediaType, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ mediaType, digest: b.digest, size: b.size, ...extra });

/** A valid erofs artifact manifest, with `change` applied. */
function manifest(change: (m: Record<string, unknown>) => void = () => undefined): Record<string, unknown> {
  const m: Record<string, unknown> = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: A3S_ROOTFS_ARTIFACT_TYPE,
    config: desc(config),
    layers: [desc(erofs)],
    annotations: { "vnd.a3s.rootfs.format": "erofs" },
  };
  change(m);
  return m;
}

/** Serves `doc` as the manifest of evil/box:TAG, through the proxy, as a registry that lies would. */
function serve(tag: string, doc: Record<string, unknown>): string {
  const body = Buffer.from(JSON.stringify(doc));
  const b = blobOf(body, OCI_MANIFEST);
  proxy.faults = { replace: { match: new RegExp(`/v2/evil/box/manifests/${tag}$`), status: 200, headers: { "content-type": OCI_MANIFEST, "docker-content-digest": b.digest }, body } };
  return `${proxy.host}/evil/box:${tag}`;
}

async function pull(reference: string, c = client(), maxBytes?: number): ReturnType<typeof pullBootImage> {
  try {
    return await pullBootImage(c, parseReference(reference), { records: false, ...(maxBytes !== undefined ? { maxBytes } : {}) });
  } finally {
    proxy.faults = {};
  }
}

describe("boot image artifacts: pushing and reading them back", () => {
  const agent = compileTestBinary({ exitCode: 7 });
  const env = { SOURCE_DATE_EPOCH: "0", A3S_CACHE_DIR: tempDir() };
  const work = tempDir();

  it("pushes an erofs image as an a3s artifact; the registry, skopeo and our pull agree on what it is", async () => {
    const local = join(work, "local.erofs");
    const r = await runCliAsync(["build", "--agent", agent, "-o", `erofs:docker://${proxy.host}/art/box:erofs`, "-o", `erofs:${local}`, "--json"], { env });
    assert.equal(r.status, 0, r.stderr);
    const [pushed, file] = (JSON.parse(r.stdout) as { outputs: { sha256: string; digest: string; pushed: { uploaded: number } }[] }).outputs;
    // The pushed image is the very file -o erofs:FILE writes.
    assert.equal(pushed!.sha256, file!.sha256);
    const raw = JSON.parse(execFileSync("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${registry.host}/art/box:erofs`], { encoding: "utf8" })) as {
      artifactType: string;
      config: { mediaType: string };
      layers: { mediaType: string; digest: string; annotations: Record<string, string> }[];
    };
    assert.equal(raw.artifactType, A3S_ROOTFS_ARTIFACT_TYPE);
    assert.equal(raw.config.mediaType, A3S_ROOTFS_CONFIG);
    assert.deepEqual(raw.layers.map((l) => l.mediaType), [A3S_ROOTFS_EROFS]);
    assert.equal(raw.layers[0]!.digest, `sha256:${file!.sha256}`);
    const c = client();
    const got = await pullBootImage(c, parseReference(`${registry.host}/art/box:erofs`), { records: false });
    assert.ok(got);
    assert.equal(got.manifestDigest, pushed!.digest);
    assert.equal(got.format, "erofs");
    assert.equal(got.downloaded, true);
    assert.deepEqual(readFileSync(got.path), readFileSync(local));
  });

  it("inspect docker://REF reads the artifact as the image it is: the same entries as the local file", async () => {
    const remote = await runCliAsync(["inspect", "--list", "--json", `docker://${registry.host}/art/box:erofs`], { env: { A3S_CACHE_DIR: tempDir() } });
    assert.equal(remote.status, 0, remote.stderr);
    const local = await runCliAsync(["inspect", "--list", "--json", join(work, "local.erofs")]);
    const list = (s: string): unknown => (JSON.parse(s) as { list: unknown }).list;
    assert.deepEqual(list(remote.stdout), list(local.stdout));
    const audit = await runCliAsync(["inspect", "--json", `docker://${registry.host}/art/box:erofs`], { env: { A3S_CACHE_DIR: tempDir() } });
    assert.equal((JSON.parse(audit.stdout) as { format: string }).format, "erofs");
  });

  // Uncompressed, the blob's digest is the one the cpio writer computed as it wrote (WrittenOutput.digest): the registry and the pull check it.
  for (const compression of ["gzip", "zstd", "none"] as const) {
    it(`pushes a cpio initramfs (${compression}) with a media type that says its compression`, async () => {
      const flags = compression === "gzip" ? [] : ["--layer-compression", compression];
      const r = await runCliAsync(["build", "--agent", agent, ...flags, "-o", `cpio:docker://${registry.host}/art/box:cpio-${compression}`], { env });
      assert.equal(r.status, 0, r.stderr);
      const got = await pullBootImage(client(), parseReference(`${registry.host}/art/box:cpio-${compression}`), { records: false });
      assert.equal(got?.format, "cpio");
      assert.equal(await detectFileFormat(got!.path), compression === "none" ? "newc" : compression);
      const raw = JSON.parse(execFileSync("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${registry.host}/art/box:cpio-${compression}`], { encoding: "utf8" })) as {
        layers: { mediaType: string }[];
      };
      assert.equal(raw.layers[0]!.mediaType, { gzip: A3S_ROOTFS_CPIO_GZIP, zstd: A3S_ROOTFS_CPIO_ZSTD, none: A3S_ROOTFS_CPIO }[compression]);
    });
  }

  it("a second pull downloads nothing and hashes the stored image again; a corrupted stored copy is downloaded again", async () => {
    const store = new ContentStore(tempDir());
    const ref = `${proxy.host}/art/box:erofs`;
    const first = await pull(ref, client({ store }));
    assert.ok(first);
    const mark = proxy.log.length;
    const second = await pull(ref, client({ store }));
    assert.equal(second?.downloaded, false);
    assert.equal(proxy.log.slice(mark).filter((e) => e.method === "GET" && e.path.includes("/blobs/")).length, 0);
    // One byte flipped in the store: found by the hash, removed, fetched again.
    const bytes = readFileSync(first.path);
    bytes[100] = bytes[100]! ^ 0xff;
    writeFileSync(first.path, bytes);
    const third = await pull(ref, client({ store }));
    assert.equal(third?.downloaded, true);
    assert.notDeepEqual(readFileSync(third!.path), bytes);
  });

  it("carries the dm-verity parameters as annotations, and gives them back on pull", async () => {
    const dir = tempDir();
    const path = join(dir, "rootfs.erofs");
    writeFileSync(path, Buffer.concat([erofs.bytes, Buffer.alloc(8192)]));
    const size = erofs.size + 8192;
    const digest = blobOf(readFileSync(path), "").digest;
    const dataBlocks = Math.ceil(erofs.size / 4096);
    const verity: ArtifactVerity = { rootHash: "ab".repeat(32), salt: "cd".repeat(32), hashOffset: dataBlocks * 4096, dataBlocks, algorithm: "sha256" };
    const image = rootfsArtifact({ file: { path, digest, size }, format: "erofs", platform: AMD64, epoch: 0, layoutVersion: 1, verity });
    const layer = JSON.parse(image.manifest.bytes.toString()) as { layers: { annotations: Record<string, string> }[] };
    assert.equal(layer.layers[0]!.annotations[VERITY_ROOT_HASH_ANNOTATION], verity.rootHash);
    await pushImage(client(), parseReference(`${registry.host}/art/verity:v1`), image);
    const got = await pull(`${registry.host}/art/verity:v1`);
    assert.deepEqual(got?.verity, verity);
    assert.throws(
      () => rootfsArtifact({ file: { path, digest, size }, format: "erofs", platform: AMD64, epoch: 0, layoutVersion: 1, verity: { ...verity, hashOffset: 4096 * 1000, dataBlocks: 1000 } }),
      code("EVERITY", /past the image's end/),
    );
  });

  it("a container image is not an artifact: run docker://REF builds it into a temporary erofs first, and says so", async () => {
    const r = await runCliAsync(["build", "--agent", agent, "-o", `docker://${registry.host}/art/plain:v1`], { env });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(await pull(`${registry.host}/art/plain:v1`), undefined);
    const saved = process.env.A3S_CACHE_DIR;
    process.env.A3S_CACHE_DIR = tempDir();
    const lines: string[] = [];
    try {
      const target = await resolveBootTarget(`docker://${registry.host}/art/plain:v1`, { progress: (m) => lines.push(m), warn: () => undefined });
      try {
        assert.equal(await detectFileFormat(target.path), "erofs");
        assert.equal(target.pulled, undefined);
      } finally {
        await target.dispose();
      }
    } finally {
      process.env.A3S_CACHE_DIR = saved;
    }
    assert.ok(lines.some((l) => /is a container image, not an a3s boot image: building it into a temporary erofs image first/.test(l)), lines.join("\n"));
  });

  it("build --verity -o erofs:docker://REF puts the build's root hash in the artifact's annotations", async () => {
    const local = join(work, "verity.erofs");
    const r = await runCliAsync(["build", "--agent", agent, "--verity", "-o", `erofs:docker://${registry.host}/art/box:verity`, "-o", `erofs:${local}`, "--json"], { env });
    assert.equal(r.status, 0, r.stderr);
    const [pushed, file] = (JSON.parse(r.stdout) as { outputs: { sha256: string; verity: ArtifactVerity & { hashPath: string } }[] }).outputs;
    // The same tree and salt: the pushed image is the local one, hash tree included.
    assert.equal(pushed!.sha256, file!.sha256);
    assert.equal(pushed!.verity.rootHash, file!.verity.rootHash);
    assert.equal(pushed!.verity.hashPath, `docker://${registry.host}/art/box:verity`);
    const got = await pullBootImage(client(), parseReference(`${registry.host}/art/box:verity`), { records: false });
    const { hashPath: _local, ...expected } = file!.verity;
    assert.deepEqual(got?.verity, expected);
  });

  it("inspect --verify docker://REF checks every block against the annotation's root hash; another pinned one fails", async () => {
    const ref = `docker://${registry.host}/art/box:verity`;
    const ok = await runCliAsync(["inspect", "--verify", "--json", ref], { env: { A3S_CACHE_DIR: tempDir() } });
    assert.equal(ok.status, 0, ok.stderr);
    const report = JSON.parse(ok.stdout) as { verity: { present: boolean; rootHash: string; rootHashSource: string; mismatch: string | null } };
    const pulled = await pullBootImage(client(), parseReference(`${registry.host}/art/box:verity`), { records: false });
    assert.deepEqual(
      { present: report.verity.present, rootHash: report.verity.rootHash, source: report.verity.rootHashSource, mismatch: report.verity.mismatch },
      { present: true, rootHash: pulled?.verity?.rootHash, source: "registry", mismatch: null },
    );
    const pinned = await runCliAsync(["inspect", "--verify", "--root-hash", "11".repeat(32), ref], { env: { A3S_CACHE_DIR: tempDir() } });
    assert.equal(pinned.status, 1);
    assert.match(pinned.stderr, new RegExp(`${ref}: verification failed`));
    const unverified = await runCliAsync(["inspect", "--verify", `docker://${registry.host}/art/box:erofs`], { env: { A3S_CACHE_DIR: tempDir() } });
    assert.equal(unverified.status, 1);
    assert.match(unverified.stderr, new RegExp(`docker://${registry.host}/art/box:erofs carries no dm-verity hash tree`));
  });

  it("run docker://REF boots the pulled artifact without building it, through dm-verity with the annotation's root hash", async () => {
    const r = await runCliAsync(["run", "--json", `docker://${registry.host}/art/box:verity`], { env: { A3S_CACHE_DIR: tempDir() } });
    assert.equal(r.status, 7, r.stderr);
    const result = JSON.parse(r.stdout) as { exitCode: number; rootVerity: { rootHash: string; source: string } | null };
    assert.equal(result.exitCode, 7);
    const pulled = await pullBootImage(client(), parseReference(`${registry.host}/art/box:verity`), { records: false });
    assert.deepEqual(result.rootVerity, { rootHash: pulled?.verity?.rootHash, source: "registry" });
  });

  it("run docker://REF refuses an artifact whose root hash is not the one pinned with --root-hash, before booting", async () => {
    const r = await runCliAsync(["run", "--root-hash", "00".repeat(32), `docker://${registry.host}/art/box:verity`], { env: { A3S_CACHE_DIR: tempDir() } });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /its artifact's verity root hash [0-9a-f]{64} is not the pinned 0{64}/);
  });
});

describe("boot image artifacts: hostile registries", () => {
  it("accepts the crafted artifact when nothing is wrong with it (the baseline for the attacks below)", async () => {
    const got = await pull(serve("good", manifest()));
    assert.equal(got?.format, "erofs");
  });

  it("refuses an artifact with more than one layer", async () => {
    await assert.rejects(pull(serve("two", manifest((m) => (m.layers = [desc(erofs), desc(erofs)])))), code("EARTIFACT", /2 layers; a boot image artifact has exactly one/));
  });

  it("refuses a layer whose media type is not a boot image", async () => {
    await assert.rejects(pull(serve("tar", manifest((m) => (m.layers = [desc(erofs, OCI_LAYER_TAR)])))), code("EARTIFACT", /not a boot image media type/));
  });

  it("refuses an image larger than allowed before downloading a byte of it", async () => {
    const mark = proxy.log.length;
    await assert.rejects(pull(serve("huge", manifest()), client(), 1000), code("EARTIFACT", /more than the 1000 allowed/));
    assert.equal(proxy.log.slice(mark).filter((e) => e.path.includes("/blobs/")).length, 0);
  });

  it("refuses an image whose bytes do not match its digest, and stores nothing", async () => {
    const store = new ContentStore(tempDir());
    const reference = serve("flipped", manifest());
    proxy.faults = { ...proxy.faults, corrupt: { match: new RegExp(erofs.digest), times: 1 } };
    await assert.rejects(pull(reference, client({ store, retry: { attempts: 1 } })), code("EDIGEST"));
    assert.equal(await store.has(erofs.digest), false);
  });

  it("refuses an image whose descriptor understates its size", async () => {
    await assert.rejects(pull(serve("short", manifest((m) => (m.layers = [desc(erofs, A3S_ROOTFS_EROFS, { size: erofs.size - 1 })])))), code("ESIZE"));
  });

  it("refuses an image whose bytes are another format than the manifest says", async () => {
    await assert.rejects(pull(serve("lie", manifest((m) => (m.layers = [desc(squashfs, A3S_ROOTFS_EROFS)])))), code("EARTIFACT", /says erofs but the image is squashfs/));
  });

  it("refuses a format annotation that contradicts the layer, and a config that does", async () => {
    await assert.rejects(pull(serve("ann", manifest((m) => (m.annotations = { "vnd.a3s.rootfs.format": "ext4" })))), code("EARTIFACT", /say "ext4" but its layer is erofs/));
    const other = blobOf(JSON.stringify({ architecture: "amd64", os: "linux", format: "ext4" }), A3S_ROOTFS_CONFIG);
    await pusher.pushBlob("evil/box", other);
    await assert.rejects(pull(serve("cfg", manifest((m) => (m.config = desc(other))))), code("EARTIFACT", /format is "ext4" but the manifest's layer is erofs/));
  });

  it("refuses an image for another platform", async () => {
    const arm = blobOf(JSON.stringify({ architecture: "arm64", os: "linux", format: "erofs" }), A3S_ROOTFS_CONFIG);
    await pusher.pushBlob("evil/box", arm);
    await assert.rejects(pull(serve("arm", manifest((m) => (m.config = desc(arm))))), code("EPLATFORM", /boot image for linux\/arm64, not linux\/amd64/));
  });

  it("refuses a config larger than an artifact's config can be", async () => {
    await assert.rejects(pull(serve("bigcfg", manifest((m) => (m.config = desc(config, A3S_ROOTFS_CONFIG, { size: 10 << 20 }))))), code("EARTIFACT", /config declares/));
  });

  it("refuses incomplete or impossible verity annotations", async () => {
    const partial = { "vnd.a3s.rootfs.verity.root-hash": "ab".repeat(32) };
    await assert.rejects(pull(serve("v1", manifest((m) => (m.layers = [desc(erofs, A3S_ROOTFS_EROFS, { annotations: partial })])))), code("EARTIFACT", /incomplete/));
    const past = {
      "vnd.a3s.rootfs.verity.root-hash": "ab".repeat(32),
      "vnd.a3s.rootfs.verity.salt": "",
      "vnd.a3s.rootfs.verity.hash-offset": String(4096 * 1000),
      "vnd.a3s.rootfs.verity.data-blocks": "1000",
      "vnd.a3s.rootfs.verity.algorithm": "sha256",
    };
    await assert.rejects(pull(serve("v2", manifest((m) => (m.layers = [desc(erofs, A3S_ROOTFS_EROFS, { annotations: past })])))), code("EARTIFACT", /past the image's end/));
  });

  it("refuses an artifact of a later a3s version, saying so", async () => {
    await assert.rejects(
      pull(serve("v9", manifest((m) => (m.artifactType = "application/vnd.a3s.rootfs.boot-image.v9")))),
      code("EARTIFACT", /another version of a3s-rootfs/),
    );
  });

  it("stores nothing of a refused artifact manifest", async () => {
    const store = new ContentStore(tempDir());
    const doc = manifest((m) => (m.layers = []));
    await assert.rejects(pull(serve("empty", doc), client({ store })), code("EARTIFACT"));
    assert.equal(await store.has(blobOf(Buffer.from(JSON.stringify(doc)), "").digest), false);
  });
});
