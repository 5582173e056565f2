// How QEMU is started (src/boot/qemu-launch.ts): under TCG without
// transparent huge pages, through guest/thp-off; under KVM with them. The
// kernel shows a process's setting in /proc/PID/status (THP_enabled).
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { after, describe, it } from "node:test";
import { qemuLaunch } from "../src/boot/qemu-launch.js";
import { buildProbeImage, isolateRunDirectories, killCliAndWaitForVm, leftoverVmProcesses, startRunUntilAgent } from "./helpers/boot.js";
import { tempDir } from "./helpers/temp-dir.js";

const runDirs = isolateRunDirectories();
after(() => {
  assert.deepEqual(leftoverVmProcesses(runDirs), [], "no VM is left running");
  rmSync(runDirs, { recursive: true, force: true });
});

/** The THP_enabled line a program started as QEMU would be sees in its own status. */
function launchedThpLine(accel: "tcg" | "kvm", more: { memoryDir?: boolean; restore?: boolean } = {}): string {
  const cmd = qemuLaunch("grep", ["^THP_enabled", "/proc/self/status"], { accel, ...more });
  const r = spawnSync(cmd.file, cmd.args, { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

describe("starting QEMU", () => {
  it("a boot under TCG runs with transparent huge pages off; under KVM, with --memory-dir and for a restore with them", () => {
    assert.equal(launchedThpLine("tcg"), "THP_enabled:\t0");
    assert.equal(launchedThpLine("kvm"), "THP_enabled:\t1");
    assert.equal(launchedThpLine("tcg", { memoryDir: true }), "THP_enabled:\t1");
    assert.equal(launchedThpLine("tcg", { restore: true }), "THP_enabled:\t1");
  });

  it("thp-off fails with 127 and the reason when the program cannot be run", () => {
    const cmd = qemuLaunch("/nonexistent/qemu", [], { accel: "tcg" });
    const r = spawnSync(cmd.file, cmd.args, { encoding: "utf8" });
    assert.equal(r.status, 127);
    assert.match(r.stderr, /thp-off: \/nonexistent\/qemu: No such file or directory/);
  });

  it("a run under TCG: its QEMU has transparent huge pages off", async () => {
    const image = await buildProbeImage(tempDir(), "cpio", "rootfs.cpio.gz");
    const cli = await startRunUntilAgent([image, "-q", "--accel", "tcg", "--transport", "9p", "--", "--wait-signal"]);
    try {
      const pids = execFileSync("pgrep", ["-f", `qemu-system.*${runDirs}/a3s-run-${cli.pid}-`], { encoding: "utf8" }).trim().split("\n");
      assert.equal(pids.length, 1, pids.join(" "));
      assert.match(readFileSync(`/proc/${pids[0]}/status`, "utf8"), /^THP_enabled:\t0$/m);
    } finally {
      assert.deepEqual(await killCliAndWaitForVm(cli, runDirs), []);
    }
  });
});
