import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, closeSync, ftruncateSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { createExt4Writer, ext4Output } from "../src/outputs/registry.js";
import { ext4ImageSize, readExt4Image } from "../src/formats/ext4/index.js";
import { bytesContent, RootfsTree } from "../src/tree/index.js";
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

  it("is exact without root too, built as uid 65534", { skip: !isRoot && "building as another user (setpriv) needs root; the unprivileged run is that user" }, async () => {
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
    // The root block holds the index, not names, so counting the entries as
    // packed blocks would fall short of the htree...
    const entryBytes = 24 + names.reduce((sum, n) => sum + 8 + Math.ceil(n.length / 4) * 4, 0);
    assert.ok(blocks > Math.ceil(entryBytes / 4084), `${blocks} blocks`);
    // ...and the estimate counts them: /many, plus the root's one block.
    assert.ok(blocks + 1 <= ext4ImageSize(tree).breakdown.directories, `${blocks} blocks, estimate ${ext4ImageSize(tree).breakdown.directories}`);
    const fsck = e2fsck(image);
    assert.equal(fsck.status, 0, fsck.output);
  });

  it("fails naming e2fsck's findings when its check of the new image finds anything", async () => {
    const tools = tempDir("a3s-e2fsck-finds-");
    // What e2fsck -fn prints for damage it finds, and its exit status for it.
    writeFileSync(join(tools, "e2fsck"), '#!/bin/sh\necho "Inode 2 has corrupt extent header.  "\necho "rootfs: ********** WARNING: Filesystem still has errors **********" >&2\nexit 4\n');
    chmodSync(join(tools, "e2fsck"), 0o755);
    const writer = createExt4Writer({ toolDirs: [tools] });
    await assert.rejects(buildImage(writer, imageSampleTree(), "x.ext4"), (e: Error & { code?: string }) => {
      assert.equal(e.code, "ETOOL");
      assert.match(e.message, /e2fsck found problems in the new ext4 image: .*Inode 2 has corrupt extent header/);
      return true;
    });
  });

  it("keeps times before 1970 and past 2038 and 2106 (ext4's extra epoch bits), read back by the inspect reader", async () => {
    const tree = new RootfsTree({ epoch: 1_000_000_000 });
    const times: Record<string, number> = { "/early": -1_000, "/y2038": 2 ** 31, "/y2106": 2 ** 32 + 5, "/late": 10_000_000_000 };
    for (const [path, mtime] of Object.entries(times)) tree.addFile(path, bytesContent(path), { mtime });
    const image = await buildImage(ext4Output, tree, "times.ext4");
    const read = await readExt4Image(image);
    try {
      for (const [path, mtime] of Object.entries(times)) assert.equal(read.tree.lookup(path)?.mtime, mtime, path);
    } finally {
      await read.dispose();
    }
  });

  it("stores POSIX ACLs in ext4's own form, which e2fsprogs reads back as the ACL it was given", async () => {
    // version 2; user::rw-, user:1000:r--, group::r--, mask::r--, other::---
    const entries = [[0x01, 6, 0xffffffff], [0x02, 4, 1000], [0x04, 4, 0xffffffff], [0x10, 4, 0xffffffff], [0x20, 0, 0xffffffff]];
    const acl = Buffer.alloc(4 + entries.length * 8);
    acl.writeUInt32LE(2, 0);
    entries.forEach(([tag, perm, id], n) => {
      acl.writeUInt16LE(tag as number, 4 + n * 8);
      acl.writeUInt16LE(perm as number, 6 + n * 8);
      acl.writeUInt32LE(id as number, 8 + n * 8);
    });
    const tree = new RootfsTree({ epoch: 1_000_000_000 });
    tree.addFile("/shared", bytesContent("acl\n"), { mode: 0o640, xattrs: { "system.posix_acl_access": acl } });
    const image = await buildImage(ext4Output, tree, "acl.ext4");
    // e2fsprogs converts ext4's form back (a stored copy of the xattr form would not convert); it
    // writes 0 as the id of the entries that have none, where the kernel and tar write 0xffffffff.
    const valueFile = join(tempDir("a3s-ext4-acl-"), "acl");
    execFileSync("debugfs", ["-R", `ea_get -f ${valueFile} /shared system.posix_acl_access`, image], { stdio: "ignore" });
    const back = readFileSync(valueFile);
    assert.equal(back.readUInt32LE(0), 2);
    const parsed = Array.from({ length: (back.length - 4) / 8 }, (_, n) => {
      const tag = back.readUInt16LE(4 + n * 8);
      return [tag, back.readUInt16LE(6 + n * 8), tag === 0x02 || tag === 0x08 ? back.readUInt32LE(8 + n * 8) : 0xffffffff];
    });
    assert.deepEqual(parsed, entries);
    const fsck = e2fsck(image);
    assert.equal(fsck.status, 0, fsck.output);
  });

  it("lays a file past 512 MiB over several block groups in more extents than an inode holds (an extent-tree block)", async () => {
    const dir = tempDir("a3s-ext4-large-");
    const big = join(dir, "big");
    // Sparse on the host: 512 MiB and two blocks (five extents of at most 128 MiB),
    // read as zeros but for a marker in each 128 MiB.
    const size = 512 * 1024 * 1024 + 4097;
    const fd = openSync(big, "w");
    for (let at = 0; at < size; at += 128 * 1024 * 1024) writeSync(fd, Buffer.from(`marker ${at}`), 0, undefined, at);
    ftruncateSync(fd, size);
    closeSync(fd);
    const tree = new RootfsTree({ epoch: 1_000_000_000 });
    tree.addFile("/big", { type: "hostFile", path: big, size });
    tree.addFile("/after", bytesContent("after the big file\n"));
    const image = await buildImage(ext4Output, tree, "large.ext4");
    const fsck = e2fsck(image);
    assert.equal(fsck.status, 0, fsck.output);
    assert.ok(blockCounts(image).total > 4 * 32768, "five block groups");
    const extents = execFileSync("debugfs", ["-R", "ex /big", image], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    assert.match(extents, /^\s*0\/ 1\s/m, "a depth-1 tree: an index in the inode, a leaf block below");
    const dumped = join(dir, "dumped");
    execFileSync("debugfs", ["-R", `dump /big ${dumped}`, image], { stdio: "ignore" });
    assert.equal(sha256File(dumped), sha256File(big));
    assert.equal(execFileSync("debugfs", ["-R", "cat /after", image], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }), "after the big file\n");
  });

  it("refuses a device number Linux cannot hold instead of wrapping it into another device", async () => {
    for (const [major, minor] of [[4096, 0], [1, 1 << 20]] as const) {
      const tree = new RootfsTree({ epoch: 1_000_000_000 });
      tree.addDevice("/dev/odd", "char", major, minor);
      await assert.rejects(buildImage(ext4Output, tree, "odd.ext4"), (e: Error & { code?: string }) => {
        assert.equal(e.code, "EDEVICE");
        assert.match(e.message, new RegExp(`/dev/odd has number ${major}:${minor}`));
        return true;
      });
    }
  });

  it("gives a small tree the minimum size, not a fixed large one", () => {
    const tree = new RootfsTree();
    tree.addFile("/a", bytesContent("a"));
    assert.equal(ext4ImageSize(tree).blocks, 256);
  });

  it("fails with the package name when e2fsck, which checks every image, is missing", async () => {
    const writer = createExt4Writer({ toolDirs: [tempDir("a3s-no-tools-")] });
    await assert.rejects(buildImage(writer, imageSampleTree(), "x.ext4"), (e: Error & { code?: string }) => {
      assert.equal(e.code, "ETOOL");
      assert.match(e.message, /e2fsck is not installed; it comes with the Debian package e2fsprogs/);
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
