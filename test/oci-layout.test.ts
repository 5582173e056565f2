import assert from "node:assert/strict";
import { mkdirSync, readFileSync, rmSync, writeFileSync, symlinkSync, linkSync, chmodSync, chownSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { execFileSync } from "node:child_process";
import { RootfsBuilder } from "../src/builder/rootfs-builder.js";
import { isA3sError } from "../src/errors.js";
import { GUEST_CONFIG_PATH } from "../src/layout/guest-config.js";
import { OCI_INDEX } from "../src/oci/media-types.js";
import { REF_NAME_ANNOTATION } from "../src/oci/layout/oci-layout.js";
import { parseSourceSpec } from "../src/sources/parse-source.js";
import type { SourceContext, SourceResult } from "../src/sources/source.js";
import { readContent, type RootfsTree } from "../src/tree/index.js";
import { observeDirectory } from "./helpers/extracted-tree.js";
import { imageDifferences } from "./helpers/image-compare.js";
import { expectedView } from "./helpers/image-sample.js";
import { tempDir } from "./helpers/temp-dir.js";
import { blobOf, descriptor, makeImage, makeIndex, makeLayer, writeOciLayout, type TestBlob, type TestImage } from "./helpers/test-image.js";
import { umociImage, umociUnpack } from "./helpers/umoci-image.js";

// The default content store and image records go to a temporary cache, not the user's.
const caches = tempDir("a3s-cache-");
let cacheCount = 0;
/** An empty cache from here on: the next load reads every layer from the layout, none from the store. */
function freshCache(): void {
  process.env.A3S_CACHE_DIR = join(caches, String(cacheCount++));
}
freshCache();
const isRoot = process.getuid?.() === 0;

function ctx(warnings: string[] = [], progress: string[] = []): SourceContext {
  return { epoch: 1_000_000_000, warn: (m) => warnings.push(m), progress: (m) => progress.push(m) };
}

async function load(spec: string, opts: { platform?: string } = {}, warnings: string[] = []): Promise<SourceResult> {
  return parseSourceSpec(spec, opts).load(ctx(warnings));
}

async function text(tree: RootfsTree, path: string): Promise<string> {
  const inode = tree.lookup(path, false);
  assert.equal(inode?.kind, "file", path);
  return (await readContent(inode.content, path)).toString();
}

function allBlobs(image: TestImage): TestBlob[] {
  return [image.config, ...image.layers];
}

/** A layout whose index.json lists `entries` as given (several tags, platforms, nested indexes). */
function writeLayout(dir: string, entries: { blob: TestBlob; name?: string; platform?: object }[], blobs: TestBlob[]): void {
  mkdirSync(join(dir, "blobs", "sha256"), { recursive: true });
  writeFileSync(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  for (const b of [...entries.map((e) => e.blob), ...blobs]) writeFileSync(join(dir, "blobs", "sha256", b.digest.slice(7)), b.bytes);
  writeFileSync(
    join(dir, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: entries.map((e) => ({
        ...descriptor(e.blob),
        ...(e.platform ? { platform: e.platform } : {}),
        ...(e.name ? { annotations: { [REF_NAME_ANNOTATION]: e.name } } : {}),
      })),
    }),
  );
}

const agentImage = makeImage(
  [
    makeLayer([
      { path: "usr/local/bin/agent", content: "#!agent\n", mode: 0o755 },
      { path: "etc/passwd", content: "root:x:0:0::/root:/bin/sh\nagent:x:900:900::/home/agent:/bin/sh\n" },
      { path: "etc/motd", content: "lower\n" },
      { path: "var/cache/junk", content: "junk" },
    ]),
    makeLayer([{ path: "etc/.wh.motd", content: "" }, { path: "var/.wh.cache", content: "" }, { path: "etc/new", content: "upper\n" }], "zstd"),
  ],
  { entrypoint: ["agent"], cmd: ["--serve"], user: "agent", workingDir: "/work" },
);

describe("oci: source (OCI image layouts)", () => {
  it("applies the image a ref name points to, and reports it", async () => {
    const dir = tempDir("a3s-layout-");
    writeOciLayout(dir, "v1", agentImage.manifest, allBlobs(agentImage));
    const result = await load(`oci:${dir}:v1`);
    const paths = result.tree.entries().map((e) => e.path);
    assert.ok(paths.includes("/etc/new") && !paths.includes("/etc/motd") && !paths.includes("/var/cache"));
    assert.equal(await text(result.tree, "/etc/new"), "upper\n");
    assert.deepEqual(result.report, {
      reference: `oci:${dir}:v1`,
      manifestDigest: agentImage.manifest.digest,
      platform: "linux/amd64",
      layers: 2,
    });
    assert.equal(result.agentDefaults?.path, "/usr/local/bin/agent");
    assert.deepEqual(result.agentDefaults?.args, ["--serve"]);
    assert.equal(result.agentDefaults?.user, "900:900");
    assert.equal(result.agentDefaults?.cwd, "/work");
    assert.equal(parseSourceSpec(`oci:${dir}:v1`).providesAgent, true);
  });

  it("builds a rootfs whose guest config starts the image's entrypoint", async () => {
    const dir = tempDir("a3s-layout-");
    writeOciLayout(dir, "v1", agentImage.manifest, allBlobs(agentImage));
    const tree = await new RootfsBuilder().withSource(`oci:${dir}:v1`).withInit(false).buildTree();
    const config = await text(tree, GUEST_CONFIG_PATH);
    assert.match(config, /^agent=\/usr\/local\/bin\/agent$/m);
    assert.match(config, /^arg=--serve$/m);
    assert.match(config, /^user=900:900$/m);
    assert.match(config, /^cwd=\/work$/m);
  });

  it("chooses an image by digest, listed in index.json or not", async () => {
    const dir = tempDir("a3s-layout-");
    const other = makeImage([makeLayer([{ path: "other", content: "other image" }])]);
    writeOciLayout(dir, "v1", agentImage.manifest, [...allBlobs(agentImage), other.manifest, ...allBlobs(other)]);
    const listed = await load(`oci:${dir}:${agentImage.manifest.digest}`);
    assert.equal(await text(listed.tree, "/etc/new"), "upper\n");
    const unlisted = await load(`oci:${dir}:${other.manifest.digest}`);
    assert.equal(await text(unlisted.tree, "/other"), "other image");
    await assert.rejects(load(`oci:${dir}:sha256:${"0".repeat(64)}`), (e) => isA3sError(e, "ENOTFOUND"));
  });

  it("needs a REF when the layout names several images, and lists them", async () => {
    const dir = tempDir("a3s-layout-");
    const other = makeImage([makeLayer([{ path: "other", content: "o" }])]);
    writeLayout(dir, [{ blob: agentImage.manifest, name: "one" }, { blob: other.manifest, name: "two" }], [...allBlobs(agentImage), ...allBlobs(other)]);
    await assert.rejects(load(`oci:${dir}`), (e) => isA3sError(e, "EUSAGE") && /one, two/.test(e.message));
    await assert.rejects(load(`oci:${dir}:three`), (e) => isA3sError(e, "ENOTFOUND") && /one, two/.test(e.hint ?? ""));
    assert.equal(await text((await load(`oci:${dir}:two`)).tree, "/other"), "o");
    const single = tempDir("a3s-layout-");
    writeOciLayout(single, "only", agentImage.manifest, allBlobs(agentImage));
    assert.equal(await text((await load(`oci:${single}`)).tree, "/etc/new"), "upper\n");
  });

  it("picks the platform from a multi-platform index, nested as skopeo --all writes it", async () => {
    const dir = tempDir("a3s-layout-");
    const amd = makeImage([makeLayer([{ path: "arch", content: "amd64" }])], { architecture: "amd64" });
    const arm = makeImage([makeLayer([{ path: "arch", content: "arm64" }])], { architecture: "arm64", variant: "v8" });
    const index = makeIndex([
      { manifest: amd.manifest, platform: { os: "linux", architecture: "amd64" } },
      { manifest: arm.manifest, platform: { os: "linux", architecture: "arm64", variant: "v8" } },
      { manifest: blobOf("{}", "application/vnd.oci.image.manifest.v1+json"), platform: { os: "unknown", architecture: "unknown" }, annotations: { "vnd.docker.reference.type": "attestation-manifest" } },
    ]);
    writeLayout(dir, [{ blob: index, name: "multi" }], [amd.manifest, arm.manifest, ...allBlobs(amd), ...allBlobs(arm)]);
    assert.equal(await text((await load(`oci:${dir}:multi`, { platform: "linux/arm64" })).tree, "/arch"), "arm64");
    assert.equal(await text((await load(`oci:${dir}:multi`, { platform: "linux/amd64" })).tree, "/arch"), "amd64");
    await assert.rejects(load(`oci:${dir}:multi`, { platform: "linux/s390x" }), (e) => isA3sError(e, "EPLATFORM") && /linux\/arm64/.test(e.hint ?? ""));
    // One image for another platform: a warning by default, an error when the platform was asked for.
    const armOnly = tempDir("a3s-layout-");
    writeOciLayout(armOnly, "arm", arm.manifest, allBlobs(arm));
    const warnings: string[] = [];
    await load(`oci:${armOnly}:arm`, { platform: undefined }, warnings);
    assert.ok(process.arch !== "x64" || warnings.some((w) => /linux\/arm64/.test(w)));
    await assert.rejects(load(`oci:${armOnly}:arm`, { platform: "linux/s390x" }), (e) => isA3sError(e, "EPLATFORM"));
  });

  it("refuses a digest or size mismatch at every level, and a missing blob", async () => {
    const fresh = (): string => {
      const dir = tempDir("a3s-layout-");
      writeOciLayout(dir, "v1", agentImage.manifest, allBlobs(agentImage));
      return dir;
    };
    const corrupt = (dir: string, digest: string): void => {
      const p = join(dir, "blobs", "sha256", digest.slice(7));
      const b = readFileSync(p);
      b[b.length >> 1] = (b[b.length >> 1] as number) ^ 1;
      writeFileSync(p, b);
    };
    for (const target of [agentImage.manifest, agentImage.config, agentImage.layers[1] as TestBlob]) {
      // An empty cache, so the layer is read from the layout rather than found by its diff_id.
      freshCache();
      const dir = fresh();
      corrupt(dir, target.digest);
      await assert.rejects(load(`oci:${dir}:v1`), (e) => isA3sError(e, "EDIGEST") && e.subject === target.digest, target.mediaType);
    }
    const sized = fresh();
    const index = JSON.parse(readFileSync(join(sized, "index.json"), "utf8")) as { manifests: { size: number }[] };
    (index.manifests[0] as { size: number }).size += 1;
    writeFileSync(join(sized, "index.json"), JSON.stringify(index));
    await assert.rejects(load(`oci:${sized}:v1`), (e) => isA3sError(e, "ESIZE"));
    freshCache();
    const missing = fresh();
    rmSync(join(missing, "blobs", "sha256", (agentImage.layers[0] as TestBlob).digest.slice(7)));
    await assert.rejects(load(`oci:${missing}:v1`), (e) => isA3sError(e, "ENOENT") && /missing/.test(e.message));
  });

  it("refuses what is not an OCI layout, and a bad spec", async () => {
    const empty = tempDir("a3s-layout-");
    await assert.rejects(load(`oci:${empty}`), (e) => isA3sError(e, "EIMAGE") && /oci-layout/.test(e.message));
    writeFileSync(join(empty, "oci-layout"), "{}");
    await assert.rejects(load(`oci:${empty}`), (e) => isA3sError(e, "EIMAGE") && /imageLayoutVersion/.test(e.message));
    assert.throws(() => parseSourceSpec("oci:"), (e) => isA3sError(e, "EUSAGE"));
    assert.throws(() => parseSourceSpec("oci:dir:"), (e) => isA3sError(e, "EUSAGE"));
  });

  it("gives the tree umoci itself unpacks, for an image umoci built in two layers with whiteouts", { skip: !isRoot && "umoci unpack keeps owners only as root" }, async () => {
    const layout = join(tempDir("a3s-umoci-layout-"), "layout");
    umociImage(
      layout,
      "t",
      [
        (rootfs) => {
          mkdirSync(join(rootfs, "etc/app"), { recursive: true });
          writeFileSync(join(rootfs, "etc/app/a.conf"), "a\n");
          writeFileSync(join(rootfs, "etc/app/b.conf"), "b\n");
          mkdirSync(join(rootfs, "usr/bin"), { recursive: true });
          writeFileSync(join(rootfs, "usr/bin/tool"), "tool\n");
          chmodSync(join(rootfs, "usr/bin/tool"), 0o4755);
          linkSync(join(rootfs, "usr/bin/tool"), join(rootfs, "usr/bin/tool2"));
          symlinkSync("usr/bin", join(rootfs, "bin"));
          mkdirSync(join(rootfs, "home/user"), { recursive: true });
          chownSync(join(rootfs, "home/user"), 1000, 1000);
          execFileSync("mkfifo", [join(rootfs, "fifo")]);
          execFileSync("mknod", [join(rootfs, "null"), "c", "1", "3"]);
          mkdirSync(join(rootfs, "var/cache/apt"), { recursive: true });
          writeFileSync(join(rootfs, "var/cache/apt/pkgcache.bin"), "cache");
        },
        (rootfs) => {
          rmSync(join(rootfs, "etc/app/a.conf"));
          rmSync(join(rootfs, "var/cache/apt"), { recursive: true });
          writeFileSync(join(rootfs, "etc/app/c.conf"), "c\n");
          linkSync(join(rootfs, "usr/bin/tool"), join(rootfs, "usr/bin/tool3"));
        },
      ],
      { entrypoint: ["/usr/bin/tool"] },
    );
    const ours = await load(`oci:${layout}:t`);
    const work = mkdtempSync(join(tmpdir(), "a3s-umoci-unpack-"));
    try {
      const theirs = observeDirectory(umociUnpack(layout, "t", join(work, "bundle")), { xattrs: false });
      const diffs = imageDifferences(theirs, await expectedView(ours.tree)).filter((d) => !/ mtime:/.test(d));
      assert.deepEqual(diffs, []);
      assert.ok(theirs.has("/etc/app/c.conf") && !theirs.has("/etc/app/a.conf") && !theirs.has("/var/cache/apt"));
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});
