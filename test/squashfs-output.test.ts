import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { mksquashfsCapabilities } from "../src/formats/image/index.js";
import { createSquashfsWriter, squashfsOutput } from "../src/outputs/registry.js";
import { findExecutable } from "../src/util/host-tool.js";
import { imageDifferences } from "./helpers/image-compare.js";
import { listSquashfs, readSquashfs } from "./helpers/image-readers.js";
import { expectedView, imageSampleTree, unprivilegedSampleTree } from "./helpers/image-sample.js";
import type { RootfsTree } from "../src/tree/index.js";
import { buildAsNobody, buildImage, isRoot, scratchLeftBy, sha256File } from "./helpers/image-test-kit.js";
import { tempDir } from "./helpers/temp-dir.js";

const mksquashfs = findExecutable("mksquashfs");
const caps = mksquashfs ? await mksquashfsCapabilities(mksquashfs) : undefined;

/** Reading back with unsquashfs -d keeps owners and devices only as root. */
const readsBack = !isRoot && "unsquashfs -d keeps owners and devices only as root";
/** The richest tree this user can build: without tar input, security xattrs need root. */
const buildable = (): RootfsTree => (isRoot || caps?.tarInput ? imageSampleTree() : unprivilegedSampleTree());

describe("squashfs output", { skip: !mksquashfs && "squashfs-tools is not installed" }, () => {
  it("writes every entry kind exactly (zstd), read back with unsquashfs -d and -lln", { skip: readsBack }, async () => {
    const tree = imageSampleTree();
    const image = await buildImage(squashfsOutput, tree, "rootfs.sqfs");
    assert.deepEqual(imageDifferences(readSquashfs(image), await expectedView(tree)), []);
    const listing = listSquashfs(image);
    assert.equal(listing.get("/"), "drwxr-xr-x 0/0");
    assert.equal(listing.get("/etc/hosts"), "-rw-r--r-- 4000000000/3000000000");
    assert.equal(listing.get("/bin/ping"), "-rwsr-xr-x 0/0");
    assert.equal(listing.get("/tmp"), "drwxrwxrwt 0/0");
    assert.equal(listing.get("/run/pipe"), "prw--w---- 70000/70001");
    assert.equal(listing.size, (await expectedView(tree)).size);
    const sb = execFileSync("unsquashfs", ["-s", image], { encoding: "utf8" });
    assert.match(sb, /Compression zstd/);
    assert.match(sb, /not exportable via NFS/);
  });

  it("writes gzip when asked", { skip: readsBack }, async () => {
    const tree = imageSampleTree();
    const image = await buildImage(createSquashfsWriter({ compression: "gzip" }), tree, "gz.sqfs");
    assert.match(execFileSync("unsquashfs", ["-s", image], { encoding: "utf8" }), /Compression gzip/);
    assert.deepEqual(imageDifferences(readSquashfs(image), await expectedView(tree)), []);
  });

  it("is byte-identical when the same tree is built twice, and stamps the epoch as its creation time", async () => {
    const a = await buildImage(squashfsOutput, buildable(), "a.sqfs");
    const b = await buildImage(squashfsOutput, buildable(), "b.sqfs");
    assert.equal(sha256File(a), sha256File(b));
    assert.equal(execFileSync("unsquashfs", ["-mkfs-time", a], { encoding: "utf8" }).trim(), String(imageSampleTree().epoch));
  });

  it("keeps every mtime even when SOURCE_DATE_EPOCH is in the environment", { skip: readsBack }, async () => {
    const saved = process.env.SOURCE_DATE_EPOCH;
    process.env.SOURCE_DATE_EPOCH = "1";
    try {
      const tree = imageSampleTree();
      const image = await buildImage(squashfsOutput, tree, "sde.sqfs");
      assert.deepEqual(imageDifferences(readSquashfs(image), await expectedView(tree)), []);
    } finally {
      if (saved === undefined) delete process.env.SOURCE_DATE_EPOCH;
      else process.env.SOURCE_DATE_EPOCH = saved;
    }
  });

  it("without root: owners, devices and user xattrs are exact (pseudo file + actions or tar input), built as uid 65534", { skip: !isRoot && "building as another user (setpriv) needs root; the unprivileged run is that user" }, async () => {
    const r = buildAsNobody("squashfs", "unprivileged");
    assert.deepEqual({ ok: r.ok, message: r.message }, { ok: true, message: undefined });
    assert.deepEqual(r.left, []);
    assert.deepEqual(imageDifferences(readSquashfs(r.image), await expectedView(unprivilegedSampleTree())), []);
  });

  it("without root: security and trusted xattrs are exact with tar input, else a clear error", { skip: !isRoot && "building as another user (setpriv) needs root; the unprivileged run is that user" }, async () => {
    const r = buildAsNobody("squashfs", "full");
    assert.deepEqual(r.left, []);
    if (caps?.tarInput) {
      assert.equal(r.ok, true, r.message);
      assert.deepEqual(imageDifferences(readSquashfs(r.image), await expectedView(imageSampleTree())), []);
    } else {
      assert.equal(r.ok, false);
      assert.equal(r.code, "ETOOL");
      assert.match(r.message ?? "", /squashfs-tools 4\.6 or newer/);
      assert.match(r.message ?? "", /2 entries \(\/bin\/ping, \/usr\/lib\/labelled\)/);
    }
  });

  it("fails with the package name when mksquashfs is missing", async () => {
    const writer = createSquashfsWriter({ toolDirs: [tempDir("a3s-no-tools-")] });
    await assert.rejects(buildImage(writer, imageSampleTree(), "x.sqfs"), (e: Error & { code?: string }) => {
      assert.equal(e.code, "ETOOL");
      assert.match(e.message, /mksquashfs is not installed; it comes with the Debian package squashfs-tools/);
      return true;
    });
  });

  it("removes its scratch files after success and after a failure", async () => {
    assert.deepEqual(await scratchLeftBy(squashfsOutput, buildable()), { left: [], error: undefined });
    const file = join(tempDir("a3s-shrinking-"), "f");
    writeFileSync(file, "short");
    const tree = buildable();
    tree.addFile("/lies", { type: "hostFile", path: file, size: 100_000 });
    const bad = await scratchLeftBy(squashfsOutput, tree);
    assert.deepEqual(bad.left, []);
    assert.match(String(bad.error), /changed size/);
  });
});
