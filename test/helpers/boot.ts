import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
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

/**
 * Gives this test file's runs their own temporary directory, so the check
 * for leftover processes sees only the VMs this file started, not those of
 * another test file booting at the same time.
 */
export function isolateRunDirectories(): string {
  const dir = mkdtempSync(join(tmpdir(), "a3s-boot-tests-"));
  process.env.TMPDIR = dir;
  return dir;
}

/** QEMU and virtiofsd processes still running whose arguments name a run directory under `dir`. */
export function leftoverVmProcesses(dir: string): string[] {
  try {
    const out = execFileSync("pgrep", ["-af", `${dir}/a3s-run-`], { encoding: "utf8" });
    return out.trim().split("\n").filter((l) => l && !l.includes("pgrep"));
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}
