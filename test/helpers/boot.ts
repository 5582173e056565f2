import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { guestProgramPath, RootfsBuilder, type OutputFormat } from "../../src/index.js";
import { runRootfs, type RunOptions, type RunResult } from "../../src/boot/run-vm.js";

/** The probe as the agent of a scratch rootfs written as `format` into `dir`. */
export async function buildProbeImage(
  dir: string,
  format: OutputFormat,
  name: string,
  configure: (b: RootfsBuilder) => RootfsBuilder = (b) => b,
): Promise<string> {
  const path = join(dir, name);
  await configure(new RootfsBuilder().withAgentBinary(guestProgramPath("probe")).withOutput(format, path)).build();
  return path;
}

/** Boots with TCG or KVM as the host allows; quiet. */
export function boot(opts: RunOptions): Promise<RunResult> {
  return runRootfs({ timeoutS: 300, ...opts });
}

/** QEMU and virtiofsd processes started for a run (their arguments name an a3s-run- directory). */
export function leftoverVmProcesses(): string[] {
  try {
    return execFileSync("pgrep", ["-af", "a3s-run-"], { encoding: "utf8" }).trim().split("\n").filter((l) => !l.includes("pgrep"));
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}
