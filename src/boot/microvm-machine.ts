import { existsSync, realpathSync } from "node:fs";
import { dirname, join } from "node:path";

/**
 * The `-M` value for every guest this project starts.
 *
 * pit=off,pic=off: with the PVH entry no firmware programs the legacy 8259
 * PIC, so its vector base is still 0 when the kernel starts. A tick of the
 * i8254 PIT that lands before the kernel remaps the PIC arrives as vector 0,
 * which the CPU takes as a divide error (#DE): the kernel dies in
 * start_kernel ("Attempted to kill the idle task"). Whether a tick lands in
 * that window is timing, so boots failed at random, more often on a busy
 * host. The guest needs neither device: its clock events come from the LAPIC
 * timer, as on Firecracker, whose machine has no PIC or PIT at all.
 */
export function microvmMachine(extra: readonly string[] = []): string {
  return ["microvm", "pit=off", "pic=off", ...extra].join(",");
}

/**
 * The firmware a microvm guest starts through: "qboot", or "default", the
 * one QEMU picks by itself (a snapshot records which, see MachineOptions).
 */
export type MicrovmFirmware = "qboot" | "default";

/**
 * qboot, the firmware written for the microvm machine, where this QEMU
 * ships it: its data directory, share/qemu beside the binary's bin/, as
 * QEMU itself finds its files. undefined when it is not there (QEMU's
 * default is then used, which boots the same guest, only slower).
 *
 * Why not QEMU's default: upstream's default for microvm (bios-microvm.bin)
 * is qboot, but Debian links that name to a SeaBIOS build (package seabios)
 * and ships qboot as qboot.rom (package qemu-system-data, which every QEMU
 * package depends on). SeaBIOS runs a whole PC BIOS start first: it zeroes
 * memory a byte at a time (its memset, about a million iterations seen with
 * a TCG plugin counting translated blocks), relocates itself and scans for
 * devices. Measured under TCG on this project's machine (6 boots each, the
 * same microVM kernel and scratch cpio, alternated), from QEMU's start:
 * to the kernel's first instruction, median 73 ms (70-123) with SeaBIOS
 * against 48 ms (47-51) with qboot; to init's first instruction 483 ms
 * (464-640) against 447 ms (430-480). QEMU's fw_cfg trace: qboot takes
 * 8 ms from its first fw_cfg access to jumping to the kernel.
 */
export function qbootFirmware(qemu: string): string | undefined {
  const known = qbootByQemu.get(qemu);
  if (known !== undefined) return known ?? undefined;
  let found: string | null = null;
  try {
    const candidate = join(dirname(dirname(realpathSync(qemu))), "share", "qemu", "qboot.rom");
    if (existsSync(candidate)) found = candidate;
  } catch {
    // an unreadable QEMU path: QEMU's default firmware
  }
  qbootByQemu.set(qemu, found);
  return found ?? undefined;
}
const qbootByQemu = new Map<string, string | null>();

/**
 * The firmware a boot starts through: what it adds to qemuArgs's spec,
 * and its name for `run --json` and a snapshot's manifest.
 */
export function bootFirmware(qemu: string): { spec: { firmware?: string }; name: MicrovmFirmware } {
  const qboot = qbootFirmware(qemu);
  return qboot !== undefined ? { spec: { firmware: qboot }, name: "qboot" } : { spec: {}, name: "default" };
}
