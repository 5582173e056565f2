// What a run leaves behind and what it refuses before QEMU starts: a CLI
// killed with SIGKILL takes its VM with it and its run directory is swept
// by the next run (only directories whose owner is dead); a --memory too
// small for the image is refused with the size it needs, and that size boots.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { initramfsFootprint, kernelSpanMiB, memoryNeed } from "../src/boot/memory-need.js";
import { processStartTime, sweepDeadRunDirectories } from "../src/boot/run-directory.js";
import { resolveKernel } from "../src/boot/resolve-kernel.js";
import { boot, buildProbeImage, isolateRunDirectories, killCliAndWaitForVm, leftoverVmProcesses, startRunUntilAgent } from "./helpers/boot.js";
import { runCli } from "./helpers/cli.js";
import { tempDir } from "./helpers/temp-dir.js";

const runDirs = isolateRunDirectories();
after(() => {
  assert.deepEqual(leftoverVmProcesses(runDirs), [], "no VM is left running");
  rmSync(runDirs, { recursive: true, force: true });
});

/** A pid and start time of a process that has ended. */
function deadProcess(): { pid: number; start: number } {
  const r = spawnSync("sh", ["-c", 'cut -d" " -f1 /proc/self/stat; s=$(cat /proc/self/stat); echo "${s##*) }" | cut -d" " -f20']);
  const [pid, start] = r.stdout.toString().trim().split("\n").map(Number);
  return { pid: pid as number, start: start as number };
}

describe("run directories", () => {
  it("the sweep removes only directories whose owner is dead", async () => {
    const dir = tempDir();
    const me = { pid: process.pid, start: processStartTime(process.pid) };
    const dead = deadProcess();
    const names = {
      live: `a3s-run-${me.pid}-${me.start}-aaaaaa`,
      dead: `a3s-run-${dead.pid}-${dead.start}-bbbbbb`,
      // this process's pid with another start time: the pid was reused, the owner is gone
      reused: `a3s-run-${me.pid}-${me.start + 1}-cccccc`,
      oldForm: "a3s-run-dddddd",
      other: "something-else",
    };
    for (const n of Object.values(names)) mkdirSync(join(dir, n));
    mkdirSync(join(dir, names.dead, "sub"));
    const target = tempDir();
    symlinkSync(target, join(dir, `a3s-run-${dead.pid}-${dead.start}-eeeeee`));

    const removed = await sweepDeadRunDirectories(dir);
    assert.deepEqual(removed.sort(), [join(dir, names.dead), join(dir, names.reused)].sort());
    assert.deepEqual(readdirSync(dir).sort(), [names.live, names.oldForm, names.other, `a3s-run-${dead.pid}-${dead.start}-eeeeee`].sort());
    assert.equal(existsSync(target), true, "a link is not followed");
  });

  it("a CLI killed with SIGKILL takes QEMU with it; the next run removes its directory", async () => {
    const image = await buildProbeImage(tempDir(), "cpio", "rootfs.cpio.gz");
    const cli = await startRunUntilAgent([image, "-q", "--transport", "9p", "--", "--wait-signal"]);
    const left = readdirSync(runDirs).filter((n) => n.startsWith(`a3s-run-${cli.pid}-`));
    assert.equal(left.length, 1, readdirSync(runDirs).join(" "));
    assert.ok(leftoverVmProcesses(runDirs).some((l) => l.includes("qemu-system")));
    assert.deepEqual(await killCliAndWaitForVm(cli, runDirs), []);
    assert.equal(existsSync(join(runDirs, left[0] as string)), true, "no process was left to remove it");

    const r = await boot({ image, args: ["--exit", "3"] });
    assert.equal(r.exitCode, 3, r.stderr);
    assert.equal(existsSync(join(runDirs, left[0] as string)), false, "the next run swept it");
  });
});

describe("--memory", () => {
  it("too small for the image: refused before QEMU starts, with the size it needs; that size boots", async () => {
    const dir = tempDir();
    const image = await buildProbeImage(dir, "cpio", "rootfs.cpio.gz");
    const r = runCli(["run", image, "--memory", "40", "-q"]);
    assert.equal(r.status, 2, r.stderr);
    const m = /--memory 40 MiB is too small to boot .*rootfs\.cpio\.gz with .*: it needs at least (\d+) MiB/.exec(r.stderr);
    assert.ok(m, r.stderr);
    assert.match(r.stderr, new RegExp(`hint: run with --memory ${m[1]} or more`));

    const work = join(dir, "work");
    mkdirSync(work);
    const kernel = await resolveKernel({ workDir: work });
    const need = memoryNeed(await kernelSpanMiB(kernel.kernelPath), 0, await initramfsFootprint(image));
    assert.ok(need.requiredMiB >= Number(m[1]) - 2 && need.requiredMiB <= Number(m[1]), `${need.requiredMiB} vs ${m[1]}`);
    const ok = await boot({ image, memoryMiB: Number(m[1]), args: ["--exit", "4"] });
    assert.equal(ok.exitCode, 4, ok.stderr);
  });

  it("a large initramfs needs more than a disk image of the same tree", async () => {
    const footprint = { pages: (64 << 20) / 4096, entries: 30 };
    const asInitramfs = memoryNeed(16, 64 << 20, footprint);
    const asDisk = memoryNeed(16, 64 << 10, { pages: 16, entries: 10 });
    // The initrd is in RAM, and its files fill half a tmpfs sized to half the RAM.
    assert.ok(asInitramfs.bootMiB > 64 * 3, String(asInitramfs.bootMiB));
    assert.ok(asDisk.bootMiB < 64, String(asDisk.bootMiB));
  });
});
