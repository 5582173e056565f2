// The dm-verity hash tree writer, checked by cryptsetup's veritysetup: the
// independent implementation of the same on-disk format.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFileSync, openSync, readFileSync, truncateSync, writeFileSync, writeSync, closeSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  appendVerityTree,
  deriveVeritySalt,
  parseVeritySalt,
  readVeritySuperblock,
  verifyVerityTree,
  verityTable,
} from "../src/formats/verity/index.js";
import { isA3sError } from "../src/errors.js";
import { tempDir } from "./helpers/temp-dir.js";

const VERITYSETUP = "/usr/sbin/veritysetup";

function veritysetupVerify(path: string, rootHash: string, hashOffset: number): { ok: boolean; stderr: string } {
  const r = spawnSync(VERITYSETUP, ["verify", path, path, rootHash, `--hash-offset=${hashOffset}`], { encoding: "utf8" });
  return { ok: r.status === 0, stderr: r.stderr };
}

function flipByte(path: string, at: number): void {
  const fd = openSync(path, "r+");
  const b = Buffer.alloc(1);
  const bytes = readFileSync(path);
  b[0] = bytes[at]! ^ 0x5a;
  writeSync(fd, b, 0, 1, at);
  closeSync(fd);
}

describe("dm-verity hash tree", () => {
  // Sizes around the edges of the tree: one data block (no hash levels), a
  // partial last block, exactly one full hash block (128 data blocks), one
  // more (a second level), and a third level.
  for (const size of [4096, 5000, 128 * 4096, 129 * 4096, 128 * 128 * 4096 + 1]) {
    it(`matches veritysetup byte for byte for a ${size}-byte image`, async () => {
      const dir = tempDir("a3s-verity-");
      const ours = join(dir, "ours.img");
      writeFileSync(ours, randomBytes(size));
      const salt = randomBytes(32);
      const info = await appendVerityTree(ours, salt);
      assert.equal(info.dataBlocks, Math.ceil(size / 4096));
      assert.equal(info.hashOffset, info.dataBlocks * 4096);
      assert.equal(info.salt, salt.toString("hex"));
      assert.equal(info.algorithm, "sha256");

      const verdict = veritysetupVerify(ours, info.rootHash, info.hashOffset);
      assert.ok(verdict.ok, `veritysetup verify refused our tree: ${verdict.stderr}`);

      // veritysetup format over the same data, with our uuid, writes the same bytes.
      const theirs = join(dir, "theirs.img");
      copyFileSync(ours, theirs);
      truncateSync(theirs, info.hashOffset);
      const sb = readFileSync(ours).subarray(info.hashOffset + 16, info.hashOffset + 32).toString("hex");
      const uuid = `${sb.slice(0, 8)}-${sb.slice(8, 12)}-${sb.slice(12, 16)}-${sb.slice(16, 20)}-${sb.slice(20)}`;
      const out = execFileSync(VERITYSETUP, [
        "format", theirs, theirs, `--hash-offset=${info.hashOffset}`, `--salt=${info.salt}`,
        `--data-blocks=${info.dataBlocks}`, `--uuid=${uuid}`,
      ], { encoding: "utf8" });
      assert.equal(/Root hash:\s+([0-9a-f]+)/.exec(out)?.[1], info.rootHash);
      assert.ok(readFileSync(ours).equals(readFileSync(theirs)), "the image with our tree differs from veritysetup's");
    });
  }

  it("is reproducible: the same bytes and salt give the same root hash and file", async () => {
    const dir = tempDir("a3s-verity-");
    const data = randomBytes(300_000);
    const salt = deriveVeritySalt("the build's identity");
    const files = ["a.img", "b.img"].map((n) => join(dir, n));
    const infos = [];
    for (const f of files) {
      writeFileSync(f, data);
      infos.push(await appendVerityTree(f, salt));
    }
    assert.equal(infos[0]!.rootHash, infos[1]!.rootHash);
    assert.ok(readFileSync(files[0]!).equals(readFileSync(files[1]!)));
    assert.notDeepEqual(deriveVeritySalt("another image"), salt);
  });

  it("reads its parameters back from the superblock", async () => {
    const path = join(tempDir("a3s-verity-"), "img");
    writeFileSync(path, randomBytes(40_000));
    const info = await appendVerityTree(path, Buffer.from("a3s"));
    const sb = await readVeritySuperblock(path, info.hashOffset);
    assert.deepEqual(sb, { dataBlocks: info.dataBlocks, salt: Buffer.from("a3s").toString("hex"), algorithm: "sha256", hashOffset: info.hashOffset });
    assert.equal(await readVeritySuperblock(path, 0), null, "no superblock at the start of the data");
  });

  it("finds a flipped byte in the data and in the stored tree, as veritysetup does", async () => {
    const dir = tempDir("a3s-verity-");
    const path = join(dir, "img");
    writeFileSync(path, randomBytes(200 * 4096));
    const info = await appendVerityTree(path, randomBytes(32));
    assert.equal(await verifyVerityTree(path, info), null);

    const dataCopy = join(dir, "data-flipped");
    copyFileSync(path, dataCopy);
    flipByte(dataCopy, 123_457);
    assert.match((await verifyVerityTree(dataCopy, info)) ?? "", /root hash is/);
    assert.equal(veritysetupVerify(dataCopy, info.rootHash, info.hashOffset).ok, false);

    const treeCopy = join(dir, "tree-flipped");
    copyFileSync(path, treeCopy);
    flipByte(treeCopy, info.hashOffset + 4096 + 4096 + 17);
    assert.match((await verifyVerityTree(treeCopy, info)) ?? "", /hash level 0 .* damaged/);
    assert.equal(veritysetupVerify(treeCopy, info.rootHash, info.hashOffset).ok, false);
  });

  it("gives the kernel's table line with the hash start after the superblock", () => {
    const line = verityTable({ rootHash: "ab".repeat(32), salt: "cd".repeat(32), hashOffset: 8192, dataBlocks: 2 }, "/dev/vda");
    assert.equal(line, `0 16 verity 1 /dev/vda /dev/vda 4096 4096 2 3 sha256 ${"ab".repeat(32)} ${"cd".repeat(32)}`);
    assert.match(verityTable({ rootHash: "00", salt: "", hashOffset: 4096, dataBlocks: 1 }, "/dev/vda"), / 00 -$/);
  });

  it("parses --verity-salt as hex or '-', and refuses anything else", () => {
    assert.deepEqual(parseVeritySalt("00ff"), Buffer.from([0, 255]));
    assert.equal(parseVeritySalt("-").length, 0);
    for (const bad of ["", "0", "xyz", "ab".repeat(257)]) {
      assert.throws(() => parseVeritySalt(bad), (e) => isA3sError(e, "EUSAGE"));
    }
  });
});
