// The rootfs the boot benchmark boots, each with the probe as its agent:
//   scratch  the A3S init starts the probe (what `a3s-rootfs demo` boots);
//   busybox  BusyBox's own init runs /etc/inittab: mount the pseudo
//            filesystems, run the probe with its output on the console,
//            power off;
//   debian   Debian bookworm minbase with systemd as PID 1, and a service
//            that runs the probe with its output on the console and then
//            powers the VM off.
// The native-init rootfs are uncompressed cpio initramfs images: the kernel
// runs /init from an initramfs, so /init leads to the native init.
import { stat } from "node:fs/promises";
import { RootfsBuilder, writeOutputs } from "../src/index.js";
import { guestProgramPath } from "../src/programs/index.js";
import { busyboxSource } from "../src/sources/busybox.js";
import { debootstrapSource } from "../src/sources/debootstrap.js";
import { bytesContent, type RootfsTree } from "../src/tree/index.js";

export const EPOCH = 1_700_000_000;
const AGENT = "/a3s/agent/a3s-box-code";

/** The demo's rootfs, exactly as `a3s-rootfs demo` builds it. */
export async function buildScratchDemo(path: string): Promise<{ entries: number }> {
  const r = await new RootfsBuilder()
    .withAgentBinary(guestProgramPath("probe"))
    .withAgentArgs(["--write", "/workspace/written-by-the-agent.txt"])
    .withOutput("cpio", path)
    .withEpoch(EPOCH)
    .build();
  return { entries: r.entries };
}

// BusyBox init runs each sysinit line in turn, waiting for it, with the
// console as its stdin, stdout and stderr.
const INITTAB = `# BusyBox init for the boot benchmark: pseudo filesystems, the probe, power off.
::sysinit:/bin/busybox mount -t proc proc /proc
::sysinit:/bin/busybox mount -t sysfs sysfs /sys
::sysinit:/bin/busybox mount -t devtmpfs devtmpfs /dev
::sysinit:${AGENT}
::sysinit:/bin/busybox poweroff -f
`;

/** BusyBox rootfs booting BusyBox's own init (no A3S init in it). */
export async function buildBusyboxNative(path: string): Promise<{ entries: number }> {
  const tree = await new RootfsBuilder()
    .withSource(busyboxSource(""))
    .withInit(false)
    .withAgentBinary(guestProgramPath("probe"))
    .withFile("/etc/inittab", INITTAB)
    .withEpoch(EPOCH)
    .onWarning(() => {})
    .buildTree();
  tree.addSymlink("/sbin/init", "/bin/busybox");
  // From an initramfs the kernel runs /init; BusyBox picks its applet by argv[0]'s basename, "init".
  tree.addSymlink("/init", "/bin/busybox");
  return writeCpio(tree, path);
}

// A oneshot service with the default dependencies, as any service a Debian
// system would start: it runs once basic.target is reached. The VM powers
// off when it ends, either way.
const PROBE_UNIT = `[Unit]
Description=A3S probe (the boot benchmark's agent)
SuccessAction=poweroff-force
FailureAction=poweroff-force

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
