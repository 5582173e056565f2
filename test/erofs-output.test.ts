import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { createErofsWriter, erofsOutput } from "../src/outputs/registry.js";
import { mkfsErofsCapabilities } from "../src/formats/image/index.js";
import { findExecutable } from "../src/util/host-tool.js";
import { imageDifferences } from "./helpers/image-compare.js";
import { readErofs } from "./helpers/image-readers.js";
import { expectedView, imageSampleTree, rootOwnedTree } from "./helpers/image-sample.js";
import type { RootfsTree } from "../src/tree/index.js";
import { buildAsNobody, buildImage, isRoot, scratchLeftBy, sha256File } from "./helpers/image-test-kit.js";
import { tempDir } from "./helpers/temp-dir.js";

const mkfs = findExecutable("mkfs.erofs");
const caps = mkfs ? await mkfsErofsCapabilities(mkfs) : undefined;

/** Reading back with fsck.erofs --extract keeps owners and devices only as root. */
const readsBack = !isRoot && "fsck.erofs --extract keeps owners and devices only as root";
/** The richest tree this user can build: erofs-utils without tar input writes mixed owners and devices only as root. */
const buildable = (): RootfsTree => (isRoot || caps?.tarInput ? imageSampleTree() : rootOwnedTree());

describe("erofs output", { skip: !mkfs && "erofs-utils is not installed" }, () => {
  it("writes every entry kind exactly (lz4hc), read back with fsck.erofs --extract and dump.erofs", { skip: readsBack }, async () => {
    const tree = imageSampleTree();
    const image = await buildImage(erofsOutput, tree, "rootfs.erofs");
    assert.deepEqual(imageDifferences(await readErofs(image), await expectedView(tree)), []);
    assert.match(execFileSync("dump.erofs", ["-s", image], { encoding: "utf8" }), /Filesystem UUID:\s+[0-9a-f]{8}-[0-9a-f]{4}-8/);
  });

  it("writes the same tree uncompressed when asked, and the compressed image is smaller", { skip: readsBack }, async () => {
    const tree = imageSampleTree();
    const plain = await buildImage(createErofsWriter({ compression: "none" }), tree, "plain.erofs");
    assert.deepEqual(imageDifferences(await readErofs(plain), await expectedView(tree)), []);
    const packed = await buildImage(erofsOutput, tree, "packed.erofs");
    assert.ok(statSize(packed) < statSize(plain), `${statSize(packed)} < ${statSize(plain)}`);
  });

  it("is byte-identical when the same tree is built twice", async () => {
    const a = await buildImage(erofsOutput, buildable(), "a.erofs");
    const b = await buildImage(erofsOutput, buildable(), "b.erofs");
    assert.equal(sha256File(a), sha256File(b));
  });

  it("without root and without tar input: a root-owned tree is exact (--all-root), built as uid 65534", { skip: !isRoot && "building as another user (setpriv) needs root; the unprivileged run is that user" }, async () => {
    const r = buildAsNobody("erofs", "rootOwned");
    assert.deepEqual({ ok: r.ok, message: r.message }, { ok: true, message: undefined });
    assert.deepEqual(r.left, []);
    assert.deepEqual(imageDifferences(await readErofs(r.image), await expectedView(rootOwnedTree())), []);
  });

  it("without root: mixed owners, devices and security xattrs are exact with tar input, else a clear error", { skip: !isRoot && "building as another user (setpriv) needs root; the unprivileged run is that user" }, async () => {
    const r = buildAsNobody("erofs", "full");
    assert.deepEqual(r.left, []);
    if (caps?.tarInput) {
      assert.equal(r.ok, true, r.message);
      assert.deepEqual(imageDifferences(await readErofs(r.image), await expectedView(imageSampleTree())), []);
    } else {
      assert.equal(r.ok, false);
      assert.equal(r.code, "ETOOL");
      assert.match(r.message ?? "", /erofs-utils 1\.7 or newer/);
      assert.match(r.message ?? "", /device nodes: 3 entries \(\/dev\/null, \/dev\/vda, \/dev\/wide\)/);
      assert.match(r.message ?? "", /xattrs other than user\.\*/);
    }
  });

  it("refuses a compressor mkfs.erofs does not have", async () => {
    const writer = createErofsWriter({ compression: "zstd" as "lz4" });
    await assert.rejects(buildImage(writer, imageSampleTree(), "x.erofs"), /has no zstd compressor/);
  });

  it("fails with the package name when mkfs.erofs is missing", async () => {
    const writer = createErofsWriter({ toolDirs: [tempDir("a3s-no-tools-")] });
    await assert.rejects(buildImage(writer, imageSampleTree(), "x.erofs"), (e: Error & { code?: string }) => {
      assert.equal(e.code, "ETOOL");
      assert.match(e.message, /mkfs\.erofs is not installed; it comes with the Debian package erofs-utils/);
      return true;
    });
  });

  it("removes its scratch files after success and after a failure", async () => {
    assert.deepEqual(await scratchLeftBy(erofsOutput, buildable()), { left: [], error: undefined });
    const file = join(tempDir("a3s-shrinking-"), "f");
    writeFileSync(file, "short");
    const tree = buildable();
    tree.addFile("/lies", { type: "hostFile", path: file, size: 100_000 });
    const bad = await scratchLeftBy(erofsOutput, tree);
    assert.deepEqual(bad.left, []);
    assert.match(String(bad.error), /changed size/);
  });
});

function statSize(path: string): number {
  return Number(execFileSync("stat", ["-c", "%s", path], { encoding: "utf8" }).trim());
}
