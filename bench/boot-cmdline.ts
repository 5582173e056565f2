// The kernel command line the boot benchmarks give every VM: the one
// runRootfs builds for a run without overrides (src/boot/run-vm.ts, not
// exported there), so the native-init boots see the same kernel parameters.
import { readFile } from "node:fs/promises";
import type { Accelerator } from "../src/boot/accelerator.js";

export async function bootCmdline(accel: Accelerator): Promise<string> {
  const parts = ["console=ttyS0", "panic=-1", "quiet"];
  if (accel === "tcg") {
    // As runRootfs does: under TCG a busy host can make the guest's TSC calibration fail.
    const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(await readFile("/proc/cpuinfo", "utf8"))?.[1];
    if (mhz) parts.push(`tsc_early_khz=${Math.round(Number(mhz) * 1000)}`);
  }
  return parts.join(" ");
}
