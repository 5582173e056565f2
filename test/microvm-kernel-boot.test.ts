// The built microVM kernel, when one is cached (scripts/setup.sh builds it
// with `a3s-rootfs kernel build`; building takes minutes, so no test builds
// one): it is listed, chosen by default, needs no modules, and boots the
// image kinds the guest uses, each with the agent running.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { prepareBootMedia } from "../src/boot/boot-media.js";
import { findMicrovmKernel, microvmKernelBundle } from "../src/boot/microvm-kernel-cache.js";
import { boot, buildProbeImage, isolateRunDirectories, leftoverVmProcesses } from "./helpers/boot.js";
import { runCli } from "./helpers/cli.js";
import { tempDir } from "./helpers/temp-dir.js";

const built = await findMicrovmKernel();
const skip = built ? false : "no microVM kernel is built for these fragments (run: a3s-rootfs kernel build)";

interface ProbeReport {
  root: { writable: boolean };
  env: string[];
  virtio_console_port_rx_bufs: string | null;
  virtual_terminals: boolean;
  workspace: { write: { writable: boolean } };
  mounts: { target: string; type: string }[];
}

function report(stdout: string): ProbeReport {
  return JSON.parse(stdout.trim().split("\n")[0] as string) as ProbeReport;
}

if (built) {
  const runDirs = isolateRunDirectories();
  after(() => {
    assert.deepEqual(leftoverVmProcesses(runDirs), [], "no VM or helper process is left running");
    rmSync(runDirs, { recursive: true, force: true });
  });
}

describe("the built microVM kernel", { skip }, () => {
  it("is listed by kernel --json as the default, with no modules needed", () => {
    const r = runCli(["kernel", "--json"]);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { default: string; kernels: { kind: string; origin: string; path: string; bytes: number; modulesNeeded: boolean; current?: boolean }[] };
    assert.equal(out.default, built!.origin);
    const mine = out.kernels.find((k) => k.origin === built!.origin);
    assert.ok(mine, r.stdout);
    assert.deepEqual([mine.kind, mine.path, mine.bytes, mine.modulesNeeded, mine.current], ["a3s-microvm", built!.path, built!.bytes, false, true]);
    assert.equal(out.kernels.find((k) => k.kind === "debian")?.modulesNeeded, true);
  });

  it("is not built again: kernel build returns the cached kernel", () => {
    const r = runCli(["kernel", "build", "--json"]);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { path: string; version: string; configHash: string; bytes: number; durationMs: number; cached: boolean };
    assert.deepEqual([out.path, out.version, out.configHash, out.bytes, out.cached], [built!.path, built!.release, built!.configHash, built!.bytes, true]);
  });

  it("gets boot media without modules: a cpio image boots as it is", async () => {
    const dir = tempDir();
    const image = await buildProbeImage(dir, "cpio", "rootfs.cpio.gz");
    const work = join(dir, "work");
    mkdirSync(work);
    const media = await prepareBootMedia({ kind: "cpio", image, kernel: microvmKernelBundle(built!), transport: "9p", workDir: work });
    assert.deepEqual(media.modules, []);
    const initrd = readFileSync(media.initrd);
    const original = readFileSync(image);
    assert.deepEqual(initrd.subarray(0, original.length), original);
    assert.ok(initrd.subarray(original.length).every((b) => b === 0), "only padding follows the image");
    const disk = await prepareBootMedia({ kind: "erofs", image, kernel: microvmKernelBundle(built!), transport: "9p", workDir: work });
    assert.equal(readFileSync(disk.initrd).includes(".ko"), false, "the disk-mode initramfs carries no module");
  });

  it("boots a cpio initramfs by default, with the workspace shared", async () => {
    const dir = tempDir();
    const image = await buildProbeImage(dir, "cpio", "rootfs.cpio.gz");
    const workspace = join(dir, "workspace");
    mkdirSync(workspace);
    writeFileSync(join(workspace, "in.txt"), "x\n");
    const consoleLog = join(dir, "console.log");
    const r = await boot({ image, workspace, consoleLog, args: ["--write", "/workspace/from-guest.txt"] });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.kernel, built!.origin, "run chose the built kernel without --kernel");
    // Under TCG on a machine without ACPI, which the kernel does not go looking for (machine-acpi.ts),
    // with its APIC timer working; the VM ended by a reset once the agent had.
    assert.equal(r.acpi, r.accel !== "tcg");
    const console = readFileSync(consoleLog, "utf8");
    if (!r.acpi) {
      assert.doesNotMatch(console, /ACPI|APIC timer disabled/);
      assert.match(console, /reboot: Restarting system/);
    } else assert.match(console, /reboot: Power down/);
    const p = report(r.stdout);
    assert.equal(p.workspace.write.writable, true);
    assert.equal(existsSync(join(workspace, "from-guest.txt")), true);
    // Built without virtual terminals (kernel/patches/0005): no tty1..tty63.
    assert.equal(p.virtual_terminals, false);
    assert.ok(r.timeline.agentStartMs !== null);
  });

  it("gives each virtio-console port 64 receive buffers, and a job larger than they hold still arrives whole", async () => {
    // kernel/patches/0004-virtio-console-port-rx-bufs.patch: 64 pages per
    // port, 256 KiB. The job travels to init on the control port; 600 KiB
    // of environment (five 120 KiB values: one string of execve may not
    // pass 128 KiB) only arrives if the buffers go back to the queue as
    // init reads them.
    const dir = tempDir();
    const image = await buildProbeImage(dir, "cpio", "rootfs.cpio.gz");
    const env = [0, 1, 2, 3, 4].map((i) => `BIG_${i}=${String.fromCharCode(97 + i).repeat(120 * 1024)}`);
    const r = await boot({ image, env });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.kernel, built!.origin);
    const p = report(r.stdout);
    assert.equal(p.virtio_console_port_rx_bufs, "64");
    for (const e of env) assert.ok(p.env.includes(e), `${e.slice(0, 6)}: arrived whole`);
  });

  for (const [format, name] of [["erofs", "rootfs.erofs"], ["ext4", "rootfs.ext4"]] as const) {
    it(`boots a read-only ${format} disk`, async () => {
      const dir = tempDir();
      const image = await buildProbeImage(dir, format, name);
      const r = await boot({ image, kernel: built!.path });
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.kernel, built!.origin, "--kernel naming the built kernel is reported as it");
      const p = report(r.stdout);
      assert.equal(p.root.writable, false);
      assert.ok(p.mounts.some((m) => m.target === "/" && m.type === format), JSON.stringify(p.mounts));
    });
  }
});
