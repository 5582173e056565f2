import type { Accelerator } from "./accelerator.js";
import type { ShareTransport } from "./boot-media.js";
import { microvmMachine } from "./microvm-machine.js";

export interface VmShare {
  readonly tag: string;
  readonly hostPath: string;
  readonly readOnly: boolean;
  /** virtio-fs only: the vhost-user socket of this share's virtiofsd. */
  readonly socket?: string;
}

export interface VmSpec {
  /** The kernel, its initramfs and command line; a restore (start: "incoming") loads none. */
  readonly kernelPath: string;
  readonly initrd: string;
  readonly disk?: string;
  readonly cmdline: string;
  readonly accel: Accelerator;
  readonly cpus: number;
  readonly memoryMiB: number;
  readonly transport: ShareTransport;
  readonly shares: readonly VmShare[];
  /**
   * Unix sockets this process listens on; QEMU connects to each as a
   * client. `changes` is the change-set port's: present only in a machine
   * that may run an overlay-mode job (lastPort).
   */
  readonly sockets: { readonly stdout: string; readonly stderr: string; readonly control: string; readonly changes?: string };
  /**
   * A writable disk for the workspace overlay's upper layer (run
   * --scratch-disk): a raw ext4 image, found by the guest through its
   * virtio serial SCRATCH_DISK_SERIAL, not by its device name.
   */
  readonly scratchDisk?: string;
  readonly consoleLog: string;
  /**
   * Guest RAM in a file instead of anonymous memory (or a memfd for
   * virtio-fs): a snapshot's template writes its RAM to the file (share),
   * a restore maps the template's file privately (copy-on-write: every
   * restore shares the pages it does not write) or a copy of it shared
   * with virtiofsd.
   */
  readonly memoryFile?: { readonly path: string; readonly share: boolean; readonly readOnly: boolean };
  /**
   * Otherwise, guest RAM in a file QEMU makes (and unlinks) in this
   * directory, shared: a tmpfs mounted with huge=always or a hugetlbfs
   * (run --memory-dir, guest-memory-dir.ts), for 2 MiB host pages.
   */
  readonly memoryDir?: { readonly path: string; readonly hugetlbfs: boolean };
  /** A Unix socket this process listens on, for QEMU's machine protocol (QMP). */
  readonly qmpSocket?: string;
  /**
   * "boot" (the default) runs the kernel; "paused" (-S) waits for QMP's
   * `cont`; "incoming" (-incoming defer) waits for a machine state to
   * restore, and loads no kernel: what runs is in the restored RAM.
   */
  readonly start?: "boot" | "paused" | "incoming";
  /**
   * The firmware file (`-bios`), or QEMU's default when absent: qboot where
   * QEMU ships it (qbootFirmware). A restore must start with the firmware
   * its snapshot was made with: the firmware's ROM is part of the machine
   * state QEMU reads back.
   */
  readonly firmware?: string;
  /** A machine without ACPI (bootsWithoutAcpi, machine-acpi.ts); a restore keeps its snapshot's. */
  readonly noAcpi?: boolean;
}

/**
 * The names of the guest's channels: init finds each virtio-serial port by
 * its name, as /dev/virtio-ports/NAME (docs/guest-protocol.md §6).
 */
export const GUEST_PORT_NAMES = { stdout: "a3s.stdout", stderr: "a3s.stderr", control: "a3s.control", changes: "a3s.changes" } as const;

/** The virtio serial of the scratch disk, by which the guest finds it (job key scratch=, docs/guest-protocol.md §8). */
export const SCRATCH_DISK_SERIAL = "a3s-scratch";

/**
 * Each channel's port number on the one virtio-serial device (0 is kept
 * for a console), set with `nr=` so that it never depends on the order of
 * QEMU's arguments, and the device node the guest kernel gives it:
 * /dev/vport<virtio device index>p<port number>. The guest numbers its
 * virtio devices in the order microvm lists them, which is the order of
 * the -device arguments: virtio-rng is 0 and the serial device 1, whatever
 * follows (a disk, shares). The host names these nodes on the kernel
 * command line (kernel-cmdline.ts), so init opens its channels without
 * looking the names up in sysfs (docs/guest-protocol.md §6).
 */
export const GUEST_PORT_NUMBERS = { stdout: 1, stderr: 2, control: 3, changes: 4 } as const;
const SERIAL_DEVICE_INDEX = 1;
export const GUEST_PORT_DEVICES = {
  stdout: `/dev/vport${SERIAL_DEVICE_INDEX}p${GUEST_PORT_NUMBERS.stdout}`,
  stderr: `/dev/vport${SERIAL_DEVICE_INDEX}p${GUEST_PORT_NUMBERS.stderr}`,
  control: `/dev/vport${SERIAL_DEVICE_INDEX}p${GUEST_PORT_NUMBERS.control}`,
} as const;

/**
 * One channel: a virtio-serial port named `name` whose host end connects
 * to the Unix socket `path`. A `virtserialport`, not a `virtconsole`: QEMU
 * throttles a serial port whose host end cannot take more (the guest's
 * writes then wait), while it drops what a console port's host end cannot
 * take at once (hw/char/virtio-console.c throttles only non-console ports).
 */
function channelArgs(id: string, channel: keyof typeof GUEST_PORT_NAMES, path: string): string[] {
  return [
    "-chardev", `socket,id=${id},path=${qemuOptionValue(path)}`,
    "-device", `virtserialport,chardev=${id},name=${GUEST_PORT_NAMES[channel]},nr=${GUEST_PORT_NUMBERS[channel]}`,
  ];
}

/**
 * The guest's virtio-serial ports: stdout, stderr, the control channel and,
 * in a machine that may run a job with its workspace in overlay mode, the
 * change set (docs/guest-protocol.md §6, §8). A boot knows its job's mode
 * and adds the change-set port only for overlay mode: each port costs the
 * guest kernel an in and an out virtqueue and 128 page-sized receive
 * buffers to set up as it boots (with Debian's kernel, init waits about
 * 100 ms under TCG for the four ports' set-up). A snapshot's machine keeps
 * the port, so a restore can run a job in either mode (make-snapshot.ts).
 * Returns the highest port number the machine's channels use: the device
 * needs room for no more.
 */
function lastPort(spec: VmSpec): number {
  return spec.sockets.changes !== undefined ? GUEST_PORT_NUMBERS.changes : GUEST_PORT_NUMBERS.control;
}

/**
 * QEMU's argv for one guest on the `microvm` machine: no firmware tables
 * beyond what the kernel needs, virtio-mmio devices only (microvm has no
 * PCI), the kernel console on the serial port, named virtio-serial ports
 * for the agent's stdout, stderr, the control channel and, when the spec
 * has its socket, the change set (docs/guest-protocol.md §6).
 */
export function qemuArgs(spec: VmSpec): string[] {
  const q = qemuOptionValue;
  const start = spec.start ?? "boot";
  const machine = microvmMachine([
    ...(spec.noAcpi ? ["acpi=off"] : []),
    ...(spec.transport === "virtiofs" || spec.memoryFile || spec.memoryDir ? ["memory-backend=mem"] : []),
  ]);
  const args = [
    "-M", machine,
    ...(spec.accel === "kvm" ? ["-accel", "kvm", "-cpu", "host"] : ["-accel", "tcg"]),
    "-smp", String(spec.cpus),
    "-m", `${spec.memoryMiB}M`,
    "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
    ...(spec.firmware !== undefined ? ["-bios", spec.firmware] : []),
    ...(start === "incoming" ? [] : ["-kernel", spec.kernelPath, "-initrd", spec.initrd, "-append", spec.cmdline]),
    "-serial", `file:${q(spec.consoleLog)}`,
    // Entropy from the host: the guest's random generator is seeded as it
    // boots (a kernel with virtio-rng built in), so getrandom() never waits
    // for entropy the guest gathers itself, slowly under TCG.
    // First of the virtio devices, then the serial device: see GUEST_PORT_DEVICES.
    "-device", "virtio-rng-device",
    // max_ports: port 0 is kept for a console, and the named ports below
    // take 1 to 3, or 4 with the change set. The default, 31, makes the
    // guest driver set up 64 virtqueues (an in and an out queue per
    // possible port, plus control), each with its own ring and MMIO
    // set-up: measured under TCG, 3 ports start the agent about 60 ms
    // sooner (median of 12).
    "-device", `virtio-serial-device,max_ports=${lastPort(spec) + 1}`,
    ...channelArgs("out", "stdout", spec.sockets.stdout),
    ...channelArgs("err", "stderr", spec.sockets.stderr),
    ...channelArgs("ctl", "control", spec.sockets.control),
    ...(spec.sockets.changes !== undefined ? channelArgs("chg", "changes", spec.sockets.changes) : []),
  ];
  if (spec.memoryFile) {
    const f = spec.memoryFile;
    // readonly=on,rom=off: a private, writable mapping of a file opened read-only (QEMU's VM templating).
    args.push("-object", `memory-backend-file,id=mem,size=${spec.memoryMiB}M,mem-path=${q(f.path)},share=${f.share ? "on" : "off"}${f.readOnly ? ",readonly=on,rom=off" : ""}`);
  } else if (spec.memoryDir) {
    // A tmpfs maps huge pages only where the mapping is aligned to them; a hugetlbfs aligns to its own page size.
    const d = spec.memoryDir;
    args.push("-object", `memory-backend-file,id=mem,size=${spec.memoryMiB}M,mem-path=${q(d.path)},share=on${d.hugetlbfs ? "" : ",align=2M"}`);
  } else if (spec.transport === "virtiofs") {
    // vhost-user needs the guest's memory shared with virtiofsd.
    args.push("-object", `memory-backend-memfd,id=mem,size=${spec.memoryMiB}M,share=on`);
  }
  if (spec.qmpSocket) args.push("-chardev", `socket,id=qmp,path=${q(spec.qmpSocket)}`, "-mon", "chardev=qmp,mode=control");
  if (start === "paused") args.push("-S");
  if (start === "incoming") args.push("-incoming", "defer");
  if (spec.disk) {
    args.push("-drive", `id=root,file=${q(spec.disk)},format=raw,if=none,readonly=on`, "-device", "virtio-blk-device,drive=root");
  }
  if (spec.scratchDisk) {
    // discard=unmap: blocks the guest frees are punched out of the sparse file again.
    args.push(
      "-drive", `id=scratch,file=${q(spec.scratchDisk)},format=raw,if=none,discard=unmap,cache=unsafe`,
      "-device", `virtio-blk-device,drive=scratch,serial=${SCRATCH_DISK_SERIAL}`,
    );
  }
  spec.shares.forEach((s, i) => {
    if (spec.transport === "virtiofs") {
      args.push("-chardev", `socket,id=vfs${i},path=${q(s.socket)}`, "-device", `vhost-user-fs-device,chardev=vfs${i},tag=${s.tag}`);
    } else {
      // readonly=on makes QEMU itself refuse writes, whatever the guest mounts.
      args.push(
        "-fsdev", `local,id=fs${i},path=${q(s.hostPath)},security_model=none${s.readOnly ? ",readonly=on" : ""}`,
        "-device", `virtio-9p-device,fsdev=fs${i},mount_tag=${s.tag}`,
      );
    }
  });
  return args;
}

/** QEMU splits option values on ",": a comma inside a path is written twice. */
export function qemuOptionValue(value: string | undefined): string {
  return (value ?? "").replace(/,/g, ",,");
}
