// Real boots of built rootfs in QEMU microvm (TCG here: ~10 s each), few and
// chosen so each proves several parts of the guest contract at once.
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { RootfsBuilder, writeOutputs } from "../src/index.js";
import { boot, buildProbeImage, isolateRunDirectories, leftoverVmProcesses } from "./helpers/boot.js";
import { runCli } from "./helpers/cli.js";
import { tempDir } from "./helpers/temp-dir.js";
import { makeShares as shares } from "./helpers/shares.js";

interface ProbeReport {
  uid: number;
  gid: number;
  root: { writable: boolean; error?: string };
  workspace: { write: { writable: boolean } };
  skills: { write: { writable: boolean; error?: string } };
  writes: { path: string; writable: boolean; error?: string }[];
  mounts: { target: string; type: string; options: string }[];
  shell_found: boolean;
  bind_127_0_0_1: true | string;
  bind_ipv6_loopback: true | string;
  orphans?: { spawned: number; reaped: number; wait_ms: number };
}

function report(stdout: string): ProbeReport {
  // The agent's stdout is exactly the probe's one JSON line: no kernel or init noise.
  const lines = stdout.trim().split("\n");
  return JSON.parse(lines[0] as string) as ProbeReport;
}

const runDirs = isolateRunDirectories();

describe("booting in a microvm", () => {
  after(() => {
    assert.deepEqual(leftoverVmProcesses(runDirs), [], "no VM or helper process is left running");
    rmSync(runDirs, { recursive: true, force: true });
  });

  it("initramfs: / is read-only, the workspace write reaches the host, /skills refuses writes, stdout is only the agent's", async () => {
    const dir = tempDir();
    const image = await buildProbeImage(dir, "cpio", "rootfs.cpio.gz");
    const { workspace, skills } = shares();
    const r = await boot({ image, workspace, skills, args: ["--write", "/workspace/from-guest.txt", "--write", "/skills/nope"] });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.signal, null);
    assert.equal(r.stdout.trim().split("\n").length, 1, r.stdout);
    const p = report(r.stdout);
    assert.deepEqual([p.root.writable, p.root.error], [false, "EROFS"]);
    assert.equal(p.workspace.write.writable, true);
    assert.deepEqual([p.skills.write.writable, p.skills.write.error], [false, "EROFS"]);
    assert.deepEqual(
      p.writes.map((w) => [w.path, w.writable]),
      [["/workspace/from-guest.txt", true], ["/skills/nope", false]],
    );
    assert.equal(existsSync(join(workspace, "from-guest.txt")), true);
    assert.equal(existsSync(join(skills, "nope")), false);
    assert.equal(p.shell_found, false);
    assert.ok(p.mounts.some((m) => m.target === "/" && m.options.split(",").includes("ro")));
    assert.ok(r.timeline.initStartMs !== null && r.timeline.agentStartMs !== null && r.timeline.agentStartMs > r.timeline.initStartMs);
    // Debian's QEMU ships qboot (qemu-system-data's qboot.rom): the run boots through it, not the SeaBIOS of microvm's default name.
    assert.equal(r.firmware, "qboot");
  });

  it("Debian's kernel, overlay mode over 9p: the run packs the 9p and overlay modules it needs (unsigned), and the write comes back", async () => {
    const dir = tempDir();
    const image = await buildProbeImage(dir, "cpio", "rootfs.cpio.gz");
    const { workspace } = shares();
    const r = await boot({ image, kernel: "debian", workspace, workspaceMode: "overlay", transport: "9p", args: ["--write", "/workspace/from-guest.txt"] });
    assert.equal(r.exitCode, 0, r.stderr);
    // Debian's kernel has IPv6: lo answers on 127.0.0.1 and ::1 (the microVM kernel's guest has 127.0.0.1 only: boot-repeat.test.ts).
    const p = report(r.stdout);
    assert.deepEqual([p.bind_127_0_0_1, p.bind_ipv6_loopback], [true, true]);
    assert.equal(r.workspaceMode, "overlay");
    assert.equal(r.changes?.outcome, "applied", JSON.stringify(r.changes));
    assert.equal(existsSync(join(workspace, "from-guest.txt")), true);
  });

  it("run (CLI) on an erofs disk with --user: the agent runs as that user, its status and stderr come back separately", async () => {
    const dir = tempDir();
    const image = await buildProbeImage(dir, "erofs", "rootfs.erofs");
    const r = runCli(["run", image, "--user", "1000:2000", "--json", "--", "--exit", "7", "--stderr", "a line on stderr"]);
    assert.equal(r.status, 7, r.stderr);
    const result = JSON.parse(r.stdout);
    assert.equal(result.exitCode, 7);
    assert.equal(result.stderr, "a line on stderr\n");
    assert.equal(result.setupError, null);
    const p = report(result.stdout);
    assert.deepEqual([p.uid, p.gid], [1000, 2000]);
    assert.equal(p.root.writable, false);
  });

  it("ext4 disk: --user drops to nobody and the orphans the agent leaves are reaped", async () => {
    const dir = tempDir();
    const image = await buildProbeImage(dir, "ext4", "rootfs.ext4", (b) => b.withAgentUser("nobody"));
    const r = await boot({ image, args: ["--spawn-orphans", "3"] });
    assert.equal(r.exitCode, 0, r.stderr);
    const p = report(r.stdout);
    assert.deepEqual([p.uid, p.gid], [65534, 65534]);
    assert.deepEqual([p.orphans?.spawned, p.orphans?.reaped], [3, 3]);
  });

  it("a timeout counts from the agent's start, then SIGTERM ends the agent", async () => {
    const dir = tempDir();
    const image = await buildProbeImage(dir, "cpio", "rootfs.cpio");
    const r = await boot({ image, args: ["--wait-signal"], timeoutS: 1 });
    assert.equal(r.timedOut, true);
    assert.equal(r.exitCode, 143);
    assert.equal(r.signal, "SIGTERM");
    // The agent had its whole second, however long the boot took: it printed
    // its report, installed its handler and reported the signal it got.
    assert.match(r.stdout, /"probe":1/);
    assert.match(r.stdout, /"signal":15/);
    const { agentStartMs, agentExitMs } = r.timeline;
    assert.ok(agentStartMs !== null && agentExitMs !== null, JSON.stringify(r.timeline));
    // Guest clock: SIGTERM was sent 1 s after the host read agent-start, which
    // the guest wrote after its execve, so only later is possible (50 ms of
    // slack for the guest's clock rate, set from the host's TSC rate). Timed
    // from the VM's start, as before, it came at once after a boot over 1 s.
    assert.ok(agentExitMs - agentStartMs >= 950, `the agent ran ${agentExitMs - agentStartMs} ms before SIGTERM ended it`);
  });

  it("a missing agent is reported as 127 with the path it looked for", async () => {
    const dir = tempDir();
    const tree = await new RootfsBuilder().withLayout({ agentPath: "/opt/missing-agent" }).buildTree();
    const image = join(dir, "no-agent.cpio");
    await writeOutputs(tree, [{ format: "cpio", path: image }], { epoch: 0, warn: () => {} });
    const r = await boot({ image });
    assert.equal(r.exitCode, 127);
    assert.match(r.setupError ?? "", /\/opt\/missing-agent/);
  });

  it("run (CLI) on a rootfs directory with a bad config drop-in exits 125 naming the line", async () => {
    const dir = tempDir();
    const image = await buildProbeImage(dir, "dir", "rootfs", (b) =>
      b.withFile("/etc/a3s/guest.conf.d/99-bad.conf", "a3s-guest-config 1\nbogus=1\n"),
    );
    const r = runCli(["run", image, "--json"]);
    assert.equal(r.status, 125, r.stderr);
    const result = JSON.parse(r.stdout);
    assert.equal(result.exitCode, 125);
    assert.match(result.setupError, /99-bad\.conf:2: unknown key "bogus"/);
    assert.equal(readFileSync(join(image, "etc/a3s/guest.conf.d/99-bad.conf"), "utf8"), "a3s-guest-config 1\nbogus=1\n");
  });
});
