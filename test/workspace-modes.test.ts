// Workspace modes with real boots (the built microVM kernel, one VM at a
// time): overlay mode brings the agent's creations, deletions, renames (of
// directories with entries in the share too), hard links, new trees and
// opaque directories back as one change set, applied or saved
// (--changes) and applied later with the same result; a symlink the agent
// plants out of the workspace leads nowhere on the host; skills stay
// read-only; --tmpfs volumes and the scratch disk stay in the guest; a run
// killed while the agent works applies nothing.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { findMicrovmKernel } from "../src/boot/microvm-kernel-cache.js";
import { RootfsBuilder } from "../src/index.js";
import { boot, isolateRunDirectories, leftoverVmProcesses } from "./helpers/boot.js";
import { CLI, runCli } from "./helpers/cli.js";
import { tempDir } from "./helpers/temp-dir.js";
import { treeListing as listing } from "./helpers/tree-listing.js";

const built = await findMicrovmKernel();
const skip = built ? false : "no microVM kernel is built for these fragments (run: a3s-rootfs kernel build)";
const runDirs = isolateRunDirectories();
const imageDir = tempDir();


/** A project, skills, and a directory beside them that nothing may touch. */
function project(): { base: string; workspace: string; skills: string; outside: string } {
  const base = tempDir("a3s-modes-");
  const workspace = join(base, "ws");
  const skills = join(base, "skills");
  const outside = join(base, "outside");
  for (const d of ["ws/keep", "ws/gone/deep", "ws/opq/old", "ws/src", "ws/mv-dir/inner", "skills", "outside"]) mkdirSync(join(base, d), { recursive: true });
  writeFileSync(join(workspace, "keep/a"), "a");
  writeFileSync(join(workspace, "gone/deep/x"), "x");
  writeFileSync(join(workspace, "opq/old/y"), "y");
  writeFileSync(join(workspace, "src/main.c"), "int main;");
  writeFileSync(join(workspace, "edit"), "old\n");
  writeFileSync(join(workspace, "rename-me"), "r");
  writeFileSync(join(workspace, "mv-dir/top"), "top");
  writeFileSync(join(workspace, "mv-dir/inner/deep"), "deep");
  writeFileSync(join(skills, "skill.md"), "a skill");
  writeFileSync(join(outside, "secret"), "secret");
  return { base, workspace, skills, outside };
}

/**
 * The agent's work: every kind of change, a symlink planted to lead out of
 * the workspace on the host (../outside) and writes through it, and a write
 * to /skills. It prints what the writes through the symlink and to /skills
 * did.
 */
const AGENT_WORK = [
  "cd /workspace",
  "echo new > new",
  "mkdir -p t/u && echo deep > t/u/v",
  "rm -rf gone",
  "mv rename-me renamed",
  // A directory with entries in the share, renamed: rename(2) itself must
  // work (mv would copy on EXDEV, giving the new directory a new inode).
  "(i=$(stat -c %i mv-dir) && mv mv-dir moved-dir && [ \"$(stat -c %i moved-dir)\" = \"$i\" ] && echo dir-rename=rename || echo dir-rename=copied)",
  "echo added > moved-dir/added && rm moved-dir/top",
  // Hard links: two new names of a new file, and a second name of a file from the share.
  "echo shared > hl-a && ln hl-a hl-b && mkdir hl && ln hl-a hl/c && ln keep/a keep/a2",
  "echo more >> edit",
  "rm -rf opq && mkdir opq && echo fresh > opq/n",
  "ln -s ../outside escape",
  "(echo pwned > escape/secret) 2>/dev/null && echo escape-write=ok || echo escape-write=failed",
  "(echo x > /skills/nope) 2>/dev/null && echo skills-write=ok || echo skills-write=failed",
].join(" && ");

const EXPECTED = {
  edit: "f:old\nmore\n",
  escape: "l:../outside",
  keep: "d",
  "keep/a": "f:a",
  "keep/a2": "f:a",
  "hl-a": "f:shared\n",
  "hl-b": "f:shared\n",
  hl: "d",
  "hl/c": "f:shared\n",
  "moved-dir": "d",
  "moved-dir/added": "f:added\n",
  "moved-dir/inner": "d",
  "moved-dir/inner/deep": "f:deep",
  new: "f:new\n",
  opq: "d",
  "opq/n": "f:fresh\n",
  renamed: "f:r",
  src: "d",
  "src/main.c": "f:int main;",
  t: "d",
  "t/u": "d",
  "t/u/v": "f:deep\n",
};

/** The agent's hard links came back as hard links: one file under each group of names. */
function assertHardLinks(workspace: string): void {
  const ino = (p: string): number => statSync(join(workspace, p)).ino;
  assert.deepEqual([ino("hl-b"), ino("hl/c"), statSync(join(workspace, "hl-a")).nlink], [ino("hl-a"), ino("hl-a"), 3]);
  assert.equal(ino("keep/a2"), ino("keep/a"), "a second name of a file from the share");
}

describe("workspace modes", { skip }, () => {
  const image = join(imageDir, "busybox.erofs");
  before(async () => {
    // BusyBox as the agent, at /bin/busybox so that it runs the applet its first argument names.
    await new RootfsBuilder().withSource("busybox").withLayout({ agentPath: "/bin/busybox" }).withAgentBinary("/bin/busybox").withOutput("erofs", image).build();
  });
  after(() => {
    assert.deepEqual(leftoverVmProcesses(runDirs), [], "no QEMU or virtiofsd is left running");
    rmSync(runDirs, { recursive: true, force: true });
  });

  it("overlay (virtio-fs): every kind of change comes back, a planted symlink leads nowhere, skills are read-only", async () => {
    const { workspace, skills, outside } = project();
    const r = await boot({ image, kernel: "microvm", workspace, skills, workspaceMode: "overlay", transport: "virtiofs", args: ["sh", "-c", AGENT_WORK] });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /escape-write=failed/, "in the guest the symlink leads out of /workspace, to nothing");
    assert.match(r.stdout, /skills-write=failed/);
    assert.match(r.stdout, /dir-rename=rename/, "a directory with entries in the share is renamed, not copied");
    assert.equal(r.workspaceMode, "overlay");
    assert.equal(r.changes?.outcome, "applied", JSON.stringify(r.changes));
    assert.deepEqual(listing(workspace), EXPECTED);
    assertHardLinks(workspace);
    assert.deepEqual(listing(outside), { secret: "f:secret" });
    assert.deepEqual(listing(skills), { "skill.md": "f:a skill" });
  });

  it("overlay over 9p with --changes, then apply FILE DIR: the same workspace as a direct apply", () => {
    const { base, workspace, skills, outside } = project();
    const untouched = listing(workspace);
    const changes = join(base, "changes.tar");
    const r = runCli(["run", image, "--kernel", "microvm", "--workspace", workspace, "--skills", skills, "--workspace-mode", "overlay", "--transport", "9p", "--changes", changes, "--json", "--", "sh", "-c", AGENT_WORK]);
    assert.equal(r.status, 0, r.stderr);
    const result = JSON.parse(r.stdout) as { transport: string; stdout: string; changes: { outcome: string; path: string } };
    assert.deepEqual([result.transport, result.changes.outcome, result.changes.path], ["9p", "saved", changes]);
    assert.match(result.stdout, /dir-rename=rename/, "over a 9p lower too");
    assert.deepEqual(listing(workspace), untouched, "--changes applies nothing");
    const a = runCli(["apply", changes, workspace]);
    assert.equal(a.status, 0, a.stderr);
    assert.deepEqual(listing(workspace), EXPECTED, "the same as the direct apply above");
    assertHardLinks(workspace);
    assert.deepEqual(listing(outside), { secret: "f:secret" });
  });

  it("--tmpfs volumes and the scratch disk stay in the guest; live mode writes straight through; skills read-only", async () => {
    const { workspace, skills } = project();
    const work = "cd /workspace && echo on-host > live && echo in-guest > nm/x && grep -E ' /workspace/nm | /run/a3s-overlay/layer ' /proc/mounts; (echo x > /skills/nope) 2>/dev/null || echo skills-write=failed";
    const live = await boot({ image, kernel: "microvm", workspace, skills, tmpfs: ["/workspace/nm:8m"], args: ["sh", "-c", work] });
    assert.equal(live.exitCode, 0, live.stderr);
    assert.match(live.stdout, /^tmpfs \/workspace\/nm tmpfs rw.*size=8192k/m);
    assert.match(live.stdout, /skills-write=failed/);
    assert.deepEqual([live.workspaceMode, live.changes], ["live", null]);
    assert.equal(readFileSync(join(workspace, "live"), "utf8"), "on-host\n");
    assert.deepEqual(readdirSync(join(workspace, "nm")), [], "the volume's files stay in the guest (its mount point is made on the host)");

    rmSync(join(workspace, "live"));
    const overlay = await boot({ image, kernel: "microvm", workspace, skills, workspaceMode: "overlay", scratchDiskMiB: 64, tmpfs: ["/workspace/nm"], args: ["sh", "-c", work] });
    assert.equal(overlay.exitCode, 0, overlay.stderr);
    assert.match(overlay.stdout, /^\/dev\/vd[a-z] \/run\/a3s-overlay\/layer ext4 rw/m, "the upper layer is on the scratch disk");
    assert.match(overlay.stdout, /skills-write=failed/);
    assert.equal(overlay.changes?.outcome, "applied");
    assert.equal(readFileSync(join(workspace, "live"), "utf8"), "on-host\n");
    assert.deepEqual(readdirSync(join(workspace, "nm")), []);
  });

  it("a run killed while the agent works applies nothing: the workspace is as it was", async () => {
    const { workspace } = project();
    const untouched = listing(workspace);
    const child = spawn(process.execPath, [CLI, "run", image, "--kernel", "microvm", "--workspace", workspace, "--workspace-mode", "overlay", "-q", "--", "sh", "-c", "cd /workspace && rm -rf keep src && echo x > new && echo working && sleep 600"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (b: Buffer) => {
        out += b.toString();
        if (out.includes("working")) resolve();
      });
      child.on("exit", (code) => reject(new Error(`run exited (${code}) before the agent worked`)));
    });
    child.kill("SIGKILL");
    await new Promise((resolve) => child.once("exit", resolve));
    // The VM dies with the CLI (die-with-parent); wait for it before looking.
    for (let i = 0; i < 100 && leftoverVmProcesses(runDirs).length; i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(listing(workspace), untouched);
    assert.equal(existsSync(join(workspace, ".a3s-apply")), false, "no journal: the apply never began");
  });
});
