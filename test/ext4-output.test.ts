import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { createExt4Writer, ext4Output } from "../src/outputs/registry.js";
import { ext4ImageSize } from "../src/formats/ext4/index.js";
import { bytesContent, RootfsTree } from "../src/tree/index.js";
import { findExecutable } from "../src/util/host-tool.js";
import { imageDifferences } from "./helpers/image-compare.js";
import { e2fsck, readExt4 } from "./helpers/image-readers.js";
import { expectedView, imageSampleTree, patternBytes } from "./helpers/image-sample.js";
import { buildAsNobody, buildImage, isRoot, scratchLeftBy, sha256File } from "./helpers/image-test-kit.js";
import { tempDir } from "./helpers/temp-dir.js";

/** Free and total blocks as dumpe2fs reports them. */
function blockCounts(image: string): { total: number; free: number } {
  const out = execFileSync("dumpe2fs", ["-h", image], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  return {
    total: Number(/Block count:\s+(\d+)/.exec(out)?.[1]),
    free: Number(/Free blocks:\s+(\d+)/.exec(out)?.[1]),
  };
}

describe("ext4 output", () => {
  it("writes every entry kind exactly, read back with debugfs, and e2fsck -fn passes", async () => {
    const tree = imageSampleTree();
    const image = await buildImage(ext4Output, tree, "rootfs.ext4");
    assert.deepEqual(imageDifferences(readExt4(image), await expectedView(tree), { extra: ["/lost+found"] }), []);
    const fsck = e2fsck(image);
    assert.equal(fsck.status, 0, fsck.output);
  });

  it("is byte-identical when the same tree is built twice", async () => {
    const a = await buildImage(ext4Output, imageSampleTree(), "a.ext4");
    const b = await buildImage(ext4Output, imageSampleTree(), "b.ext4");
    assert.equal(sha256File(a), sha256File(b));
  });

  it("stamps a UUID derived from the tree, different for a different tree", async () => {
    const uuidOf = (img: string): string =>
      /Filesystem UUID:\s+(\S+)/.exec(execFileSync("dumpe2fs", ["-h", img], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }))?.[1] ?? "";
    const other = imageSampleTree();
    other.addFile("/extra", bytesContent("x"));
    const a = uuidOf(await buildImage(ext4Output, imageSampleTree(), "a.ext4"));
    const b = uuidOf(await buildImage(ext4Output, other, "b.ext4"));
    assert.match(a, /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.notEqual(a, b);
  });

  it("is exact without root too (tar input + debugfs xattrs), built as uid 65534", { skip: !isRoot && "building as another user (setpriv) needs root; the unprivileged run is that user" }, async () => {
    const r = buildAsNobody("ext4", "full");
    assert.deepEqual({ ok: r.ok, message: r.message }, { ok: true, message: undefined });
    assert.deepEqual(r.left, []);
    assert.deepEqual(imageDifferences(readExt4(r.image), await expectedView(imageSampleTree()), { extra: ["/lost+found"] }), []);
    assert.equal(sha256File(r.image), sha256File(await buildImage(ext4Output, imageSampleTree(), "root.ext4")));
  });

  it("sizes the image from the content: large files and a crowded directory fit, with bounded free space", async () => {
    const tree = new RootfsTree({ epoch: 1_000_000_000 });
    tree.addFile("/data/blob", bytesContent(patternBytes(6 * 1024 * 1024 + 123, 5)));
    for (let i = 0; i < 2500; i++) tree.addFile(`/many/file-with-a-fairly-long-name-${i}`, bytesContent(`file ${i}\n`));
    tree.addFile("/xattrs", bytesContent("x"), { xattrs: { "user.big": "v".repeat(3000) } });
    const image = await buildImage(ext4Output, tree, "sized.ext4");
    assert.deepEqual(imageDifferences(readExt4(image), await expectedView(tree), { extra: ["/lost+found"] }), []);
    const fsck = e2fsck(image);
    assert.equal(fsck.status, 0, fsck.output);
    const { total, free } = blockCounts(image);
    const size = ext4ImageSize(tree);
    assert.equal(total, size.blocks);
    assert.equal(statSync(image).size, size.bytes);
    // The estimate must leave room (it built) without wasting it: the
    // headroom is 10% + 64 blocks, so free space stays well under a quarter.
    assert.ok(free > 0 && free / total < 0.25, `free ${free} of ${total}`);
  });

  it("has metadata_csum, with a directory of more than one block indexed (htree) in no more blocks than the size estimate counts", async () => {
    const tree = new RootfsTree({ epoch: 1_000_000_000 });
    const names = Array.from({ length: 2500 }, (_, i) => `file-with-a-fairly-long-name-${i}`);
    for (const n of names) tree.addFile(`/many/${n}`, bytesContent(""));
    const image = await buildImage(ext4Output, tree, "indexed.ext4");
    const super_ = execFileSync("dumpe2fs", ["-h", image], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    assert.match(/Filesystem features:(.*)/.exec(super_)?.[1] ?? "", /\bmetadata_csum\b/);
    const stat = execFileSync("debugfs", ["-R", "stat /many", image], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    const flags = Number(/Flags: (0x[0-9a-f]+)/.exec(stat)?.[1]);
    assert.ok((flags & 0x1000) !== 0, `EXT4_INDEX_FL in ${stat.split("\n")[0]}`);
    const blocks = Number(/Size: (\d+)/.exec(stat)?.[1]) / 4096;
    // The leaves keep e2fsck's 20 % slack, so counting the entries as packed
    // blocks (what mke2fs alone writes) would fall short of the htree...
    const entryBytes = 24 + names.reduce((sum, n) => sum + 8 + Math.ceil(n.length / 4) * 4, 0);
    assert.ok(blocks > Math.ceil(entryBytes / 4084), `${blocks} blocks`);
    // ...and the estimate counts them: /many, plus the root's one block.
    assert.ok(blocks + 1 <= ext4ImageSize(tree).breakdown.directories, `${blocks} blocks, estimate ${ext4ImageSize(tree).breakdown.directories}`);
    const fsck = e2fsck(image);
    assert.equal(fsck.status, 0, fsck.output);
  });

  it("fails naming e2fsck's findings when its check of the new image finds what preen mode will not repair", async () => {
    const tools = tempDir("a3s-e2fsck-finds-");
    for (const name of ["mke2fs", "tune2fs", "debugfs"]) symlinkSync(findExecutable(name) as string, join(tools, name));
    // What e2fsck -p prints for damage it leaves to a person, and its exit status for it.
    writeFileSync(join(tools, "e2fsck"), '#!/bin/sh\necho "rootfs: Inode 2 has corrupt extent header.  "\necho "rootfs: UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY." >&2\nexit 4\n');
    chmodSync(join(tools, "e2fsck"), 0o755);
    const writer = createExt4Writer({ toolDirs: [tools] });
    await assert.rejects(buildImage(writer, imageSampleTree(), "x.ext4"), (e: Error & { code?: string }) => {
      assert.equal(e.code, "ETOOL");
      assert.match(e.message, /e2fsck found problems in the new ext4 image that it will not repair on its own: .*Inode 2 has corrupt extent header/);
      return true;
    });
  });

  it("gives a small tree the minimum size, not a fixed large one", () => {
    const tree = new RootfsTree();
    tree.addFile("/a", bytesContent("a"));
    assert.equal(ext4ImageSize(tree).blocks, 256);
  });

  it("fails with the package name when mke2fs is missing", async () => {
    const writer = createExt4Writer({ toolDirs: [tempDir("a3s-no-tools-")] });
    await assert.rejects(buildImage(writer, imageSampleTree(), "x.ext4"), (e: Error & { code?: string }) => {
      assert.equal(e.code, "ETOOL");
      assert.match(e.message, /mke2fs is not installed; it comes with the Debian package e2fsprogs/);
      return true;
    });
  });

  it("removes its scratch files after success and after a failure", async () => {
    const ok = await scratchLeftBy(ext4Output, imageSampleTree());
    assert.deepEqual(ok, { left: [], error: undefined });
    const file = join(tempDir("a3s-shrinking-"), "f");
    writeFileSync(file, "short");
    const tree = imageSampleTree();
    tree.addFile("/lies", { type: "hostFile", path: file, size: 100_000 });
    const bad = await scratchLeftBy(ext4Output, tree);
    assert.deepEqual(bad.left, []);
    assert.match(String(bad.error), /changed size|ECONTENT|exited/);
  });
});
