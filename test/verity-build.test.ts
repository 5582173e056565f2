// `build --verity`: the hash tree appended to erofs, squashfs and ext4
// outputs, checked by cryptsetup's veritysetup, reproducible, reported in
// --json and in IMAGE.verity.json; `inspect` reports it and `--verify`
// checks it. No boots here (verity-boot.test.ts boots).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { guestProgramPath } from "../src/index.js";
import { runCli } from "./helpers/cli.js";
import { tempDir } from "./helpers/temp-dir.js";

interface VerityJson {
  rootHash: string;
  salt: string;
  hashOffset: number;
  dataBlocks: number;
  algorithm: string;
  hashPath: string;
}
interface BuildJson {
  outputs: { format: string; path: string; bytes: number; sha256: string | null; verity?: VerityJson }[];
}

const PROBE = guestProgramPath("probe");

function build(dir: string, extra: string[], outputs: string[]): BuildJson {
  const r = runCli(["build", "--agent", PROBE, "--json", ...extra, ...outputs.map((o) => ["-o", o]).flat()], {
    env: { SOURCE_DATE_EPOCH: "1700000000" },
    cwd: dir,
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as BuildJson;
}

function veritysetupVerify(path: string, v: VerityJson): { ok: boolean; stderr: string } {
  const r = spawnSync("/usr/sbin/veritysetup", ["verify", path, path, v.rootHash, `--hash-offset=${v.hashOffset}`], { encoding: "utf8" });
  return { ok: r.status === 0, stderr: r.stderr };
}

function flipByte(path: string, at: number): void {
  const b = readFileSync(path);
  const fd = openSync(path, "r+");
  writeSync(fd, Buffer.from([b[at]! ^ 0xff]), 0, 1, at);
  closeSync(fd);
}

describe("build --verity", () => {
  it("appends a tree veritysetup accepts to erofs, squashfs and ext4, and reports it", () => {
    const dir = tempDir("a3s-verity-build-");
    const report = build(dir, ["--verity"], ["erofs:r.erofs", "squashfs:r.sqfs", "ext4:r.ext4", "cpio:r.cpio"]);
    for (const o of report.outputs) {
      if (o.format === "cpio") {
        assert.equal(o.verity, undefined, "a cpio archive carries no hash tree");
        assert.equal(existsSync(`${o.path}.verity.json`), false);
        continue;
      }
      const v = o.verity;
      assert.ok(v, `${o.format}: no verity in the report`);
      assert.deepEqual(Object.keys(v).sort(), ["algorithm", "dataBlocks", "hashOffset", "hashPath", "rootHash", "salt"]);
      assert.equal(v.algorithm, "sha256");
      assert.equal(v.hashPath, o.path, "the tree is appended to the image itself");
      assert.equal(v.hashOffset, v.dataBlocks * 4096);
      assert.match(v.rootHash, /^[0-9a-f]{64}$/);
      assert.match(v.salt, /^[0-9a-f]{64}$/);
      const verdict = veritysetupVerify(o.path, v);
      assert.ok(verdict.ok, `${o.format}: veritysetup verify: ${verdict.stderr}`);
      // The reported sha256 (from the verity pass, no second read) is the file's.
      assert.equal(o.sha256, createHash("sha256").update(readFileSync(o.path)).digest("hex"));
      const sidecar = JSON.parse(readFileSync(`${o.path}.verity.json`, "utf8")) as Record<string, unknown>;
      assert.deepEqual(sidecar, { a3sVerity: 1, rootHash: v.rootHash, salt: v.salt, hashOffset: v.hashOffset, dataBlocks: v.dataBlocks, algorithm: "sha256" });
    }
  });

  it("is reproducible: the same inputs and SOURCE_DATE_EPOCH give the same root hash; another salt another one", () => {
    const a = build(tempDir("a3s-verity-a-"), ["--verity"], ["erofs:r.erofs"]).outputs[0]!;
    const b = build(tempDir("a3s-verity-b-"), ["--verity"], ["erofs:r.erofs"]).outputs[0]!;
    assert.equal(a.verity?.rootHash, b.verity?.rootHash);
    assert.equal(a.sha256, b.sha256);
    const salted = build(tempDir("a3s-verity-c-"), ["--verity", "--verity-salt", "00112233"], ["erofs:r.erofs"]).outputs[0]!;
    assert.equal(salted.verity?.salt, "00112233");
    assert.notEqual(salted.verity?.rootHash, a.verity?.rootHash);
    assert.ok(veritysetupVerify(salted.path, salted.verity!).ok);
  });

  it("a rebuild without --verity removes the record the earlier build left, and nothing else", () => {
    const dir = tempDir("a3s-verity-rebuild-");
    build(dir, ["--verity"], ["erofs:r.erofs"]);
    assert.ok(existsSync(join(dir, "r.erofs.verity.json")));
    build(dir, [], ["erofs:r.erofs", "squashfs:r.sqfs"]);
    assert.equal(existsSync(join(dir, "r.erofs.verity.json")), false);
    writeFileSync(join(dir, "r.sqfs.verity.json"), "my notes\n");
    build(dir, [], ["squashfs:r.sqfs"]);
    assert.equal(readFileSync(join(dir, "r.sqfs.verity.json"), "utf8"), "my notes\n", "a file a3s-rootfs did not write stays");
  });

  it("refuses --verity without an image output, and a malformed --verity-salt, before any work (exit 2)", () => {
    const dir = tempDir("a3s-verity-usage-");
    for (const [args, message] of [
      [["--verity", "-o", "cpio:r.cpio"], /--verity needs an erofs, squashfs or ext4 output/],
      [["--verity", "--verity-salt", "xyz", "-o", "erofs:r.erofs"], /invalid verity salt/],
      [["--verity-salt", "00", "-o", "erofs:r.erofs"], /--verity-salt needs --verity/],
    ] as const) {
      const r = runCli(["build", "--agent", PROBE, ...args], { cwd: dir });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, message);
    }
    assert.equal(existsSync(join(dir, "r.erofs")), false);
  });

  it("inspect reports the tree; --verify passes an intact image and fails one flipped byte, naming it", () => {
    const dir = tempDir("a3s-verity-inspect-");
    const o = build(dir, ["--verity"], ["erofs:r.erofs"]).outputs[0]!;
    const ok = runCli(["inspect", "--verify", "--json", o.path]);
    assert.equal(ok.status, 0, ok.stderr);
    const report = JSON.parse(ok.stdout) as { verity: Record<string, unknown> };
    assert.deepEqual(report.verity, {
      present: true,
      dataBlocks: o.verity!.dataBlocks,
      hashOffset: o.verity!.hashOffset,
      salt: o.verity!.salt,
      rootHash: o.verity!.rootHash,
      rootHashSource: "sidecar",
      mismatch: null,
    });

    const wrong = runCli(["inspect", "--verify", "--root-hash", "ab".repeat(32), o.path]);
    assert.equal(wrong.status, 1);
    assert.match(wrong.stderr, /verification failed: the data's root hash is [0-9a-f]{64}, not abab/);

    flipByte(o.path, 5000);
    const bad = runCli(["inspect", "--verify", o.path]);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /r\.erofs: verification failed/);

    const plain = build(dir, [], ["erofs:plain.erofs"]).outputs[0]!;
    const none = runCli(["inspect", "--json", plain.path]);
    assert.deepEqual((JSON.parse(none.stdout) as { verity: unknown }).verity, { present: false });
    const noTree = runCli(["inspect", "--verify", plain.path]);
    assert.equal(noTree.status, 1);
    assert.match(noTree.stderr, /carries no dm-verity hash tree/);
  });
});
