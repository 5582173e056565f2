import { readFile } from "node:fs/promises";

/**
 * The host's TSC rate in kHz, for the guest's tsc_early_khz under TCG, where
 * the guest's rdtsc reads the host's TSC. Undefined when it cannot be known
 * without privileges; the guest then calibrates on its own.
 *
 * Where the rate comes from, and why not elsewhere:
 * - /proc/cpuinfo's "cpu MHz" is the core's current clock, which cpufreq
 *   changes under load and idle: it is not the TSC rate on such hosts.
 * - The kernel's own figure (dmesg "tsc: Detected ... MHz" and "tsc: Refined
 *   TSC clocksource calibration") needs privileges on most hosts
 *   (kernel.dmesg_restrict), and /sys has no tsc_khz file upstream.
 * - x86 Linux sets loops_per_jiffy from tsc_khz when the TSC is its delay
 *   timer (tsc_init: lpj = tsc_khz * 1000 / HZ), and /proc/cpuinfo prints
 *   "bogomips" as loops_per_jiffy / (500000 / HZ), that is tsc_khz / 500, to
 *   two decimals: a rate to within 5 kHz, readable by anyone. It holds only
 *   when the TSC ticks at a fixed rate, which the "constant_tsc" CPU flag
 *   says; without it there is no one rate to give.
 */
export async function hostTscKhz(): Promise<number | undefined> {
  return tscKhzFromCpuinfo(await readFile("/proc/cpuinfo", "utf8").catch(() => ""));
}

/** tscKhz from the text of /proc/cpuinfo (see hostTscKhz). */
export function tscKhzFromCpuinfo(cpuinfo: string): number | undefined {
  const flags = /^flags\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.split(/\s+/) ?? [];
  const bogomips = Number(/^bogomips\s*:\s*([\d.]+)$/m.exec(cpuinfo)?.[1]);
  if (!flags.includes("constant_tsc") || !Number.isFinite(bogomips) || bogomips <= 0) return undefined;
  return Math.round(bogomips * 500);
}
