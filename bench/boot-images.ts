// The rootfs the boot benchmark boots, each with the probe as its agent:
//   scratch  the A3S init starts the probe (what `a3s-rootfs demo` boots);
//   debian   Debian bookworm minbase with systemd as PID 1, and a service
//            that runs the probe with its output on the console and then
//            ends the VM.
// The native-init rootfs are uncompressed cpio initramfs images: the kernel
// runs /init from an initramfs, so /init leads to the native init.
import { mkdirSync } from "node:fs";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { prepareBootMedia, type BootMedia } from "../src/boot/boot-media.js";
import type { KernelBundle } from "../src/boot/kernel-bundle.js";
import { RootfsBuilder, writeOutputs } from "../src/index.js";
import { guestProgramPath } from "../src/programs/index.js";
import { debootstrapSource } from "../src/sources/debootstrap.js";
import { bytesContent, type RootfsTree } from "../src/tree/index.js";

export const EPOCH = 1_700_000_000;
const AGENT = "/a3s/agent/a3s-box-code";

/** The demo's rootfs, exactly as `a3s-rootfs demo` builds it, before its output is named. */
function scratchBuilder(): RootfsBuilder {
  return new RootfsBuilder()
    .withAgentBinary(guestProgramPath("probe"))
    .withAgentArgs(["--write", "/workspace/written-by-the-agent.txt"])
    .withEpoch(EPOCH);
}

/** The demo's rootfs as a cpio.gz initramfs. */
export async function buildScratchDemo(path: string): Promise<{ entries: number }> {
  const r = await scratchBuilder().withOutput("cpio", path).build();
  return { entries: r.entries };
}

/** The same rootfs as an erofs disk image (the A3S init's disk mode). */
export async function buildScratchErofs(path: string): Promise<void> {
  await scratchBuilder().withOutput("erofs", path).build();
}

/**
 * The scratch rootfs as a cpio.gz and as an erofs disk, each with its boot
 * media for `kernel`, as `run IMAGE` makes them without --workspace or
 * --skills: keyed "scratch cpio" and "scratch erofs".
 */
export async function buildScratchMedia(work: string, kernel: KernelBundle): Promise<Record<string, BootMedia>> {
  const cpio = join(work, "scratch.cpio.gz");
  const erofs = join(work, "scratch.erofs");
  await buildScratchDemo(cpio);
  await buildScratchErofs(erofs);
  const out: Record<string, BootMedia> = {};
  for (const [name, kind, image] of [["scratch cpio", "cpio", cpio], ["scratch erofs", "erofs", erofs]] as const) {
    const dir = join(work, kind);
    mkdirSync(dir);
    out[name] = await prepareBootMedia({ kind, image, kernel, transport: "9p", jobs: { shares: false, overlay: false }, workDir: dir });
  }
  return out;
}

// A oneshot service with the default dependencies, as any service a Debian
// system would start: it runs once basic.target is reached. The VM ends
// when it does, either way: by a reset, which QEMU's -no-reboot turns into
// its exit, since the microVM kernel's machine under TCG has no ACPI to
// power off with (src/boot/machine-acpi.ts).
const PROBE_UNIT = `[Unit]
Description=A3S probe (the boot benchmark's agent)
SuccessAction=reboot-force
FailureAction=reboot-force

[Service]
Type=oneshot
ExecStart=${AGENT}
StandardOutput=tty
StandardError=tty
TTYPath=/dev/console

[Install]
WantedBy=multi-user.target
`;

/**
 * Debian minbase + systemd-sysv booting systemd. The tree is the debootstrap
 * source's own (trimmed as the source does), not the A3S layer: its
 * /etc/passwd, group and nsswitch.conf stay Debian's, so systemd finds the
 * users and groups its packages created, as on a real Debian system.
 */
export async function buildDebianNative(path: string, progress: (m: string) => void): Promise<{ entries: number; packages: number }> {
  const source = await debootstrapSource("bookworm", { include: ["systemd-sysv"] }).load({ epoch: EPOCH, warn: () => {}, progress });
  const tree = source.tree;
  const probe = guestProgramPath("probe");
  tree.addDirectory("/a3s/agent");
  tree.addFile(AGENT, { type: "hostFile", path: probe, size: (await stat(probe)).size }, { mode: 0o755 });
  tree.addFile("/etc/systemd/system/a3s-probe.service", bytesContent(PROBE_UNIT), { mode: 0o644 });
  tree.addDirectory("/etc/systemd/system/multi-user.target.wants");
  tree.addSymlink("/etc/systemd/system/multi-user.target.wants/a3s-probe.service", "/etc/systemd/system/a3s-probe.service");
  tree.addSymlink("/init", "/lib/systemd/systemd");
  const packages = Array.isArray(source.report?.packages) ? source.report.packages.length : 0;
  return { ...(await writeCpio(tree, path)), packages };
}

async function writeCpio(tree: RootfsTree, path: string): Promise<{ entries: number }> {
  await writeOutputs(tree, [{ format: "cpio", path }], { epoch: EPOCH, warn: () => {} });
  return { entries: tree.entryCount };
}
