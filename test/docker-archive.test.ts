import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { gunzipSync } from "node:zlib";
import { isA3sError } from "../src/errors.js";
import { parseSourceSpec } from "../src/sources/parse-source.js";
import type { SourceResult } from "../src/sources/source.js";
import { readContent, type RootfsTree } from "../src/tree/index.js";
import { expectedView } from "./helpers/image-sample.js";
import { tempDir } from "./helpers/temp-dir.js";
import { makeImage, makeLayer, writeOciLayout, type TestImage, type TestLayer } from "./helpers/test-image.js";

// The default content store and image records go to a temporary cache, not the user's.
const caches = tempDir("a3s-cache-");
let cacheCount = 0;
/** An empty cache from here on: the next load reads every layer from the archive, none from the store. */
function freshCache(): void {
  process.env.A3S_CACHE_DIR = join(caches, String(cacheCount++));
}
freshCache();

async function load(spec: string): Promise<SourceResult> {
  return parseSourceSpec(spec).load({ epoch: 1_000_000_000, warn: () => {}, progress: () => {} });
}

async function text(tree: RootfsTree, path: string): Promise<string> {
  const inode = tree.lookup(path, false);
  assert.equal(inode?.kind, "file", path);
  return (await readContent(inode.content, path)).toString();
}

/** GNU tar of everything in `dir`, members named as in `docker save` (no "./" prefix). */
function tarDir(dir: string, out: string): string {
  execFileSync("tar", ["--format=pax", "--sort=name", "-C", dir, "-cf", out, ...readdirSync(dir).sort()]);
  return out;
}

/** The uncompressed tar of a test layer (docker save stores layers uncompressed). */
function plainTar(layer: TestLayer): Buffer {
  return layer.mediaType.endsWith("gzip") ? gunzipSync(layer.bytes) : layer.bytes;
}

const image = makeImage(
  [
    makeLayer([
      { path: "etc/os-release", content: "ID=test\n" },
      { path: "usr/bin/app", content: "#!app\n", mode: 0o755 },
      { path: "tmp/scratch", content: "gone later" },
    ]),
    makeLayer([{ path: "tmp/.wh.scratch", content: "" }, { path: "etc/app.conf", content: "port=80\n" }]),
  ],
  { entrypoint: ["/usr/bin/app"], docker: true },
);

/** A legacy `docker save` layout: ID/layer.tar per layer, HEX.json config, manifest.json, repositories. */
function legacyArchive(img: TestImage, tags: string[], opts: { linkLayer?: boolean; config?: Buffer } = {}): string {
  const dir = tempDir("a3s-save-");
  const configHex = img.config.digest.slice(7);
  writeFileSync(join(dir, `${configHex}.json`), opts.config ?? img.config.bytes);
  const layers = opts.linkLayer ? img.layers.slice(0, -1) : img.layers;
  const layerPaths = layers.map((l, i) => {
    const id = String(i).repeat(64);
    mkdirSync(join(dir, id));
    writeFileSync(join(dir, id, "VERSION"), "1.0");
    writeFileSync(join(dir, id, "json"), "{}");
    writeFileSync(join(dir, id, "layer.tar"), plainTar(l));
    return `${id}/layer.tar`;
  });
  if (opts.linkLayer) {
    // Docker links a layer that appears twice (here: the last one, equal to the first) to its first copy.
    const id = "f".repeat(64);
    mkdirSync(join(dir, id));
    symlinkSync(`../${layerPaths[0]}`, join(dir, id, "layer.tar"));
    layerPaths.push(`${id}/layer.tar`);
  }
  writeFileSync(join(dir, "manifest.json"), JSON.stringify([{ Config: `${configHex}.json`, RepoTags: tags, Layers: layerPaths }]));
  writeFileSync(join(dir, "repositories"), "{}");
  return tarDir(dir, join(tempDir("a3s-archive-"), "image.tar"));
}

describe("docker-archive: source (docker save tarballs)", () => {
  it("reads Docker's legacy layout, its tags and a layer linked to another", async () => {
    const twice = makeImage([...image.layers, image.layers[0] as TestLayer], { entrypoint: ["/usr/bin/app"], docker: true });
    const archive = legacyArchive(twice, ["example.com/app:1"], { linkLayer: true });
    const result = await load(`docker-archive:${archive}`);
    assert.equal(await text(result.tree, "/etc/app.conf"), "port=80\n");
    assert.equal(await text(result.tree, "/tmp/scratch"), "gone later"); // the third layer brings it back
    assert.equal(result.agentDefaults?.path, "/usr/bin/app");
    assert.deepEqual(result.report, {
      reference: `docker-archive:${archive}`,
      manifestDigest: twice.config.digest,
      platform: "linux/amd64",
      layers: 3,
      archiveFormat: "docker",
      tags: ["example.com/app:1"],
    });
  });

  it("reads what skopeo writes as docker-archive, into the same tree as the OCI layout it came from", async () => {
    const layout = tempDir("a3s-layout-");
    // skopeo's oci: transport reads OCI media types only.
    const oci = makeImage(image.layers, { entrypoint: ["/usr/bin/app"] });
    writeOciLayout(layout, "v1", oci.manifest, [oci.config, ...oci.layers]);
    const archive = join(tempDir("a3s-skopeo-"), "app.tar");
    execFileSync("skopeo", ["copy", "-q", `oci:${layout}:v1`, `docker-archive:${archive}:example.com/app:1`]);
    const fromArchive = await load(`docker-archive:${archive}`);
    const fromLayout = await load(`oci:${layout}:v1`);
    assert.deepEqual(await expectedView(fromArchive.tree), await expectedView(fromLayout.tree));
    assert.deepEqual(fromArchive.report?.tags, ["example.com/app:1"]);
  });

  it("reads Docker 25's OCI layout in the tar, and an OCI layout tarred without manifest.json", async () => {
    const dir = tempDir("a3s-save25-");
    writeOciLayout(dir, "example.com/app:1", image.manifest, [image.config, ...image.layers]);
    const oci = tarDir(dir, join(tempDir("a3s-archive-"), "oci.tar"));
    const plainOci = await load(`docker-archive:${oci}`);
    assert.equal(plainOci.report?.archiveFormat, "oci");
    assert.equal(await text(plainOci.tree, "/etc/app.conf"), "port=80\n");

    writeFileSync(
      join(dir, "manifest.json"),
      JSON.stringify([
        {
          Config: `blobs/sha256/${image.config.digest.slice(7)}`,
          RepoTags: ["example.com/app:1"],
          Layers: image.layers.map((l) => `blobs/sha256/${l.digest.slice(7)}`),
        },
      ]),
    );
    const docker25 = tarDir(dir, join(tempDir("a3s-archive-"), "docker25.tar"));
    const result = await load(`docker-archive:${docker25}`);
    assert.equal(result.report?.archiveFormat, "docker");
    assert.deepEqual(await expectedView(result.tree), await expectedView(plainOci.tree));
  });

  it("reads a compressed archive and removes its temporary copy", async () => {
    const tmp = tempDir("a3s-tmp-");
    const before = process.env.TMPDIR;
    process.env.TMPDIR = tmp;
    try {
      const archive = legacyArchive(image, ["app:1"]);
      execFileSync("gzip", ["-k", archive]);
      const result = await load(`docker-archive:${archive}.gz`);
      assert.equal(await text(result.tree, "/etc/os-release"), "ID=test\n");
      assert.deepEqual(readdirSync(tmp).filter((n) => n.startsWith("a3s-docker-archive-")), []);
    } finally {
      if (before === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = before;
    }
  });

  it("chooses among several images by tag or @N, and lists the tags otherwise", async () => {
    const other = makeImage([makeLayer([{ path: "which", content: "other" }])], { docker: true });
    const dir = tempDir("a3s-save-");
    const entries = [image, other].map((img, n) => {
      writeFileSync(join(dir, `${img.config.digest.slice(7)}.json`), img.config.bytes);
      const layers = img.layers.map((l, i) => {
        const name = `${n}${i}`.padEnd(64, "0");
        mkdirSync(join(dir, name));
        writeFileSync(join(dir, name, "layer.tar"), plainTar(l));
        return `${name}/layer.tar`;
      });
      return { Config: `${img.config.digest.slice(7)}.json`, RepoTags: [n === 0 ? "app:1" : "docker.io/library/other:latest"], Layers: layers };
    });
    writeFileSync(join(dir, "manifest.json"), JSON.stringify(entries));
    const archive = tarDir(dir, join(tempDir("a3s-archive-"), "two.tar"));
    await assert.rejects(load(`docker-archive:${archive}`), (e) => isA3sError(e, "EUSAGE") && /app:1, docker.io\/library\/other:latest/.test(e.hint ?? ""));
    assert.equal(await text((await load(`docker-archive:${archive}:other`)).tree, "/which"), "other");
    assert.equal(await text((await load(`docker-archive:${archive}:@1`)).tree, "/which"), "other");
    assert.equal(await text((await load(`docker-archive:${archive}:app:1`)).tree, "/etc/app.conf"), "port=80\n");
    await assert.rejects(load(`docker-archive:${archive}:nope`), (e) => isA3sError(e, "ENOTFOUND"));
    await assert.rejects(load(`docker-archive:${archive}:@7`), (e) => isA3sError(e, "ENOTFOUND"));
  });

  it("refuses a config or layer that is not what its name or diff_id says, and names outside the archive", async () => {
    freshCache();
    const tampered = Buffer.from(image.config.bytes.toString().replace('"amd64"', '"arm64"'));
    await assert.rejects(load(`docker-archive:${legacyArchive(image, [], { config: tampered })}`), (e) => isA3sError(e, "EDIGEST"));

    const badLayer = makeImage([makeLayer([{ path: "x", content: "x" }])], { docker: true });
    const forged = { ...badLayer, layers: [{ ...(badLayer.layers[0] as TestLayer), bytes: gunzipSync((image.layers[0] as TestLayer).bytes) }] };
    const dir = tempDir("a3s-save-");
    writeFileSync(join(dir, `${badLayer.config.digest.slice(7)}.json`), badLayer.config.bytes);
    mkdirSync(join(dir, "l"));
    writeFileSync(join(dir, "l", "layer.tar"), (forged.layers[0] as TestLayer).bytes);
    const write = (layers: string[]): string => {
      writeFileSync(join(dir, "manifest.json"), JSON.stringify([{ Config: `${badLayer.config.digest.slice(7)}.json`, RepoTags: null, Layers: layers }]));
      return tarDir(dir, join(tempDir("a3s-archive-"), "bad.tar"));
    };
    await assert.rejects(load(`docker-archive:${write(["l/layer.tar"])}`), (e) => isA3sError(e, "EDIGEST"));
    await assert.rejects(load(`docker-archive:${write(["../../../etc/passwd"])}`), (e) => isA3sError(e, "EPATH"));
    await assert.rejects(load(`docker-archive:${write(["missing/layer.tar"])}`), (e) => isA3sError(e, "ENOENT"));

    const notArchive = join(tempDir("a3s-archive-"), "x.tar");
    writeFileSync(notArchive, readFileSync(legacyArchive(image, [])).subarray(0, 0));
    await assert.rejects(load(`docker-archive:${notArchive}`), (e) => isA3sError(e, "EIMAGE"));
    assert.throws(() => parseSourceSpec("docker-archive:"), (e) => isA3sError(e, "EUSAGE"));
  });
});
