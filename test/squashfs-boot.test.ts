// A real boot of a squashfs root disk written with the default compression
// (zstd at SQUASHFS_ZSTD_LEVEL, not mksquashfs's own default level): the
// microVM kernel must mount it and run the agent. One boot (TCG: ~10 s).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { after, describe, it } from "node:test";
import { SQUASHFS_ZSTD_LEVEL } from "../src/formats/squashfs/index.js";
import { buildProbeImage, isolateRunDirectories, leftoverVmProcesses } from "./helpers/boot.js";
import { runCli } from "./helpers/cli.js";
import { tempDir } from "./helpers/temp-dir.js";

const runDirs = isolateRunDirectories();

describe("booting a squashfs root disk", () => {
  after(() => {
    assert.deepEqual(leftoverVmProcesses(runDirs), [], "no VM or helper process is left running");
    rmSync(runDirs, { recursive: true, force: true });
  });

  it(`run (CLI) on a squashfs disk compressed with zstd level ${SQUASHFS_ZSTD_LEVEL}: the agent runs on a read-only root`, async () => {
    const dir = tempDir();
    const image = await buildProbeImage(dir, "squashfs", "rootfs.sqfs");
    const superblock = execFileSync("unsquashfs", ["-s", image], { encoding: "utf8" });
    assert.match(superblock, /Compression zstd/);
    assert.match(superblock, new RegExp(`compression-level ${SQUASHFS_ZSTD_LEVEL}\\b`), superblock);
    const r = runCli(["run", image, "--json", "--", "--exit", "3"]);
    assert.equal(r.status, 3, r.stderr);
    const result = JSON.parse(r.stdout) as { exitCode: number; setupError: unknown; stdout: string };
    assert.equal(result.exitCode, 3);
    assert.equal(result.setupError, null);
    const probe = JSON.parse(result.stdout.trim().split("\n")[0] as string) as { root: { writable: boolean }; mounts: { target: string; type: string }[] };
    assert.equal(probe.root.writable, false);
    assert.ok(probe.mounts.some((m) => m.target === "/" && m.type === "squashfs"), JSON.stringify(probe.mounts));
  });
});
