// Real boots of images built with --verity: the guest's root is mounted
// through dm-verity, with the microVM kernel (device-mapper built in) and
// with Debian's (dm-mod and dm-verity loaded by init); a flipped byte in the
// filesystem's superblock, in a file init reads, or in the agent stops the
// VM before the agent runs on it, and `run` exits 123.
import assert from "node:assert/strict";
import { closeSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { describe, it } from "node:test";
import { ROOT_VERIFICATION_FAILED } from "../src/boot/verity-root.js";
import { guestProgramPath } from "../src/index.js";
import { boot, buildProbeImage, isolateRunDirectories, leftoverVmProcesses } from "./helpers/boot.js";
import { runCli } from "./helpers/cli.js";
import { tempDir } from "./helpers/temp-dir.js";

const runDirs = isolateRunDirectories();

function flipByteAt(path: string, at: number): void {
  const b = readFileSync(path);
  const fd = openSync(path, "r+");
  writeSync(fd, Buffer.from([b[at]! ^ 0x01]), 0, 1, at);
  closeSync(fd);
}

/** The offset of `needle` in the image's data area (before the hash tree), which must hold it exactly once. */
function offsetOf(path: string, needle: Buffer, hashOffset: number): number {
  const data = readFileSync(path).subarray(0, hashOffset);
  const at = data.indexOf(needle);
  assert.ok(at >= 0, `${needle.toString("latin1").slice(0, 20)}... not found in ${path}`);
  assert.equal(data.indexOf(needle, at + 1), -1, "found twice: the test would not know which copy is read");
  return at;
}

async function verityImage(format: "erofs" | "ext4", name: string): Promise<{ path: string; rootHash: string; hashOffset: number }> {
  const dir = tempDir("a3s-verity-boot-");
  const path = await buildProbeImage(dir, format, name, (b) => b.withVerity());
  const v = JSON.parse(readFileSync(`${path}.verity.json`, "utf8")) as { rootHash: string; hashOffset: number };
  return { path, rootHash: v.rootHash, hashOffset: v.hashOffset };
}

describe("booting a verity image", () => {
  it("erofs with the default kernel: the root is verified and the agent runs", async () => {
    const img = await verityImage("erofs", "root.erofs");
    const r = await boot({ image: img.path, args: ["--exit", "0"] });
    assert.equal(r.exitCode, 0, r.setupError ?? "");
    assert.deepEqual(r.rootVerity, { rootHash: img.rootHash, source: "sidecar" });
  });

  it("ext4 with Debian's kernel: init loads device-mapper and opens the verity device itself", async () => {
    const img = await verityImage("ext4", "root.ext4");
    const r = await boot({ image: img.path, kernel: "debian", args: ["--exit", "3"] });
    assert.equal(r.exitCode, 3, r.setupError ?? "");
    assert.equal(r.rootVerity?.rootHash, img.rootHash);
  });

  for (const [what, locate] of [
    ["the filesystem superblock", () => 1024 + 4] as const,
    ["the guest config init reads", (img: { path: string; hashOffset: number }) => offsetOf(img.path, Buffer.from("a3s-guest-config 1\n"), img.hashOffset) + 4] as const,
    ["the agent binary", (img: { path: string; hashOffset: number }) => offsetOf(img.path, readFileSync(guestProgramPath("probe")).subarray(0, 256), img.hashOffset) + 64] as const,
  ]) {
    it(`a flipped byte in ${what} stops the boot: exit ${ROOT_VERIFICATION_FAILED}, never the agent`, async () => {
      const img = await verityImage("ext4", "root.ext4");
      flipByteAt(img.path, locate(img));
      const r = await boot({ image: img.path, args: ["--exit", "0"] });
      assert.equal(r.exitCode, ROOT_VERIFICATION_FAILED, `${r.setupError ?? ""}\n${r.stdout}`);
      assert.match(r.setupError ?? "", /the root filesystem failed verification \(device-mapper: verity: .* is corrupted\)/);
      assert.equal(r.timeline.agentStartMs, null, "the agent never started");
      assert.equal(r.stdout, "");
    });
  }

  it("--root-hash: a recorded hash that differs is refused before boot; without the record the guest stops", async () => {
    const img = await verityImage("erofs", "root.erofs");
    const other = "ab".repeat(32);
    await assert.rejects(boot({ image: img.path, rootHash: other }), /refusing to boot .*its recorded root hash [0-9a-f]{64} is not the pinned abab/);
    renameSync(`${img.path}.verity.json`, `${img.path}.moved`);
    const cli = runCli(["run", img.path, "--root-hash", other, "-q", "--", "--exit", "0"]);
    assert.equal(cli.status, ROOT_VERIFICATION_FAILED, cli.stderr);
    assert.match(cli.stderr, /the root filesystem failed verification/);
    const pinned = await boot({ image: img.path, rootHash: img.rootHash, args: ["--exit", "4"] });
    assert.equal(pinned.exitCode, 4);
    assert.deepEqual(pinned.rootVerity, { rootHash: img.rootHash, source: "--root-hash" });
  });

  it("leaves no VM or helper running", () => {
    assert.deepEqual(leftoverVmProcesses(runDirs), []);
  });
});
