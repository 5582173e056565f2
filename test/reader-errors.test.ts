// Readers say what is wrong: a cut archive is called truncated (with the
// file and the offset), a cut compressed stream is called a truncated
// stream, and bytes that are no rootfs image are named as such, with the
// magic number the file's name promised. Real files, the real CLI.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { describe, it } from "node:test";
import { isA3sError } from "../src/errors.js";
import { runCli } from "./helpers/cli.js";
import { applyLayers } from "./helpers/layer-image.js";
import { BLOCK } from "./helpers/raw-tar.js";
import { tempDir } from "./helpers/temp-dir.js";
import { blobOf } from "./helpers/test-image.js";
import { OCI_LAYER_TAR } from "../src/oci/media-types.js";
import { createHash, randomBytes } from "node:crypto";

/** A directory of 20 small files and 3 directories, archived by GNU tar and GNU cpio. */
function sample(): { dir: string; tar: Buffer; cpio: Buffer } {
  const dir = tempDir();
  const root = join(dir, "root");
  for (const sub of ["a", "b", "c"]) mkdirSync(join(root, sub), { recursive: true });
  for (let i = 0; i < 20; i++) writeFileSync(join(root, "abc"[i % 3] as string, `f${i}`), `file ${i}\n`.repeat(40));
  const tar = execFileSync("tar", ["--sort=name", "-cf", "-", "-C", root, "."]);
  const cpio = execFileSync("sh", ["-c", "find . | LC_ALL=C sort | cpio -o -H newc --quiet"], { cwd: root });
  return { dir, tar, cpio };
}

/** Offsets of the tar's member headers, in order. */
function memberOffsets(tar: Buffer): number[] {
  const out: number[] = [];
  for (let pos = 0; pos + BLOCK <= tar.length; ) {
    const h = tar.subarray(pos, pos + BLOCK);
    if (h.every((b) => b === 0)) break;
    out.push(pos);
    const size = parseInt(h.toString("latin1", 124, 136).replace(/\0.*$/, "").trim() || "0", 8);
    pos += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
  }
  return out;
}

describe("truncated archives", () => {
  const { dir, tar, cpio } = sample();
  const write = (name: string, bytes: Buffer): string => {
    const p = join(dir, name);
    writeFileSync(p, bytes);
    return p;
  };

  it("inspect of a tar cut on a member boundary (a 512-byte boundary) says it is truncated, where, and exits 1", () => {
    const offsets = memberOffsets(tar);
    assert.ok(offsets.length > 20);
    const cutAt = offsets[18] as number;
    const file = write("cut.tar", tar.subarray(0, cutAt));
    const r = runCli(["inspect", file]);
    assert.equal(r.status, 1, r.stdout);
    assert.match(r.stderr, new RegExp(`error: ${file} is truncated: it ends at byte ${cutAt} without the end-of-archive marker`));
    assert.match(r.stderr, /hint: .*head -c 1024 \/dev\/zero/);
    assert.equal(r.stdout, "", "no report of a partial tree");
  });

  it("a tar with a lone zero block at its end lost nothing, and is read whole", () => {
    const end = memberOffsets(tar).at(-1) as number;
    const lastSize = parseInt(tar.toString("latin1", end + 124, end + 136).replace(/\0.*$/, "").trim() || "0", 8);
    const afterLast = end + BLOCK + Math.ceil(lastSize / BLOCK) * BLOCK;
    const file = write("lone.tar", tar.subarray(0, afterLast + BLOCK));
    const r = runCli(["inspect", "--json", file]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).byKind.file, 20);
  });

  it("a compressed tar whose content lacks the marker names the user's file, never a temporary copy", () => {
    const offsets = memberOffsets(tar);
    const file = write("cut.tar.gz", gzipSync(tar.subarray(0, offsets[10])));
    const r = runCli(["inspect", file]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`error: ${file} \\(decompressed\\) is truncated: it ends at byte ${offsets[10]}`));
    assert.doesNotMatch(r.stderr, /a3s-archive-/);
  });

  it("a cpio without its TRAILER!!! entry is truncated", () => {
    const trailer = cpio.indexOf("TRAILER!!!") - 110;
    const file = write("cut.cpio", cpio.subarray(0, trailer));
    const r = runCli(["inspect", file]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`error: ${file} is truncated: it ends at byte ${trailer} without the cpio trailer \\(TRAILER!!!\\)`));
  });

  it("a .cpio.zst and a .cpio.gz cut short are truncated zstd and gzip streams", () => {
    for (const [name, compressed] of [
      ["cut.cpio.zst", execFileSync("zstd", ["-q", "-c", "-3"], { input: cpio })],
      ["cut.cpio.gz", gzipSync(cpio)],
    ] as const) {
      const kind = name.endsWith(".zst") ? "zstd" : "gzip";
      const keep = Math.floor(compressed.length / 2);
      const file = write(name, compressed.subarray(0, keep));
      const r = runCli(["inspect", file]);
      assert.equal(r.status, 1, name);
      assert.match(r.stderr, new RegExp(`error: ${file}: truncated ${kind} stream: the data ends after ${keep} bytes, before the stream's end`), name);
      assert.match(r.stderr, /hint: the file was cut short/);
    }
  });

  it("a layer whose tar lacks the end marker is refused, even when its digest matches", async () => {
    const cut = tar.subarray(0, memberOffsets(tar)[5]);
    const layer = { ...blobOf(cut, OCI_LAYER_TAR), diffId: `sha256:${createHash("sha256").update(cut).digest("hex")}` };
    await assert.rejects(applyLayers([layer]), (e) => isA3sError(e, "ECORRUPT") && /is truncated: it ends at byte \d+ without the end-of-archive marker/.test(e.message) && !/blobs\/sha256/.test(e.message));
  });
});

describe("bytes that are no rootfs image", () => {
  it("inspect of random bytes named .erofs says which magic is missing where", () => {
    const dir = tempDir();
    const file = join(dir, "rootfs.erofs");
    writeFileSync(file, randomBytes(64 * 1024));
    const r = runCli(["inspect", file]);
    assert.equal(r.status, 1);
    assert.match(
      r.stderr,
      new RegExp(`error: ${file} is not a recognised rootfs image \\(no tar, cpio, ext4, erofs or squashfs magic\\); its name says erofs, but the erofs superblock magic is missing at byte 1024`),
    );
    const plain = join(dir, "blob.bin");
    writeFileSync(plain, readFileSync(file));
    const other = runCli(["inspect", plain]);
    assert.equal(other.status, 1);
    assert.match(other.stderr, /blob\.bin is not a recognised rootfs image \(no tar, cpio, ext4, erofs or squashfs magic\)\n/);
  });
});
