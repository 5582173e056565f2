import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { join } from "node:path";
import { guestProgramPath, RootfsBuilder, type OutputFormat } from "../../src/index.js";
import { runRootfs, type RunOptions, type RunResult } from "../../src/boot/run-vm.js";
import { CLI } from "./cli.js";
import { tempDir } from "./temp-dir.js";

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
  const dir = tempDir("a3s-boot-tests-");
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

/**
 * Starts `a3s-rootfs run ARGS` and resolves once the probe agent has
 * reported, that is, once the VM (and any virtiofsd) is up and the agent
 * runs; rejects if the CLI exits before that.
 */
export async function startRunUntilAgent(args: readonly string[]): Promise<ChildProcessWithoutNullStreams> {
  const cli = spawn(process.execPath, [CLI, "run", ...args], { stdio: ["pipe", "pipe", "pipe"] });
  cli.stdin.end();
  let out = "";
  let err = "";
  cli.stderr.on("data", (b: Buffer) => (err += b.toString()));
  await new Promise<void>((resolve, reject) => {
    cli.stdout.on("data", (b: Buffer) => {
      out += b.toString();
      if (out.includes('"probe":1')) resolve();
    });
    cli.on("exit", (code) => reject(new Error(`the CLI exited (${code}) before the agent ran: ${err}`)));
  });
  return cli;
}

/** SIGKILLs a CLI and waits until no VM process of a run under `runDirs` is left (PR_SET_PDEATHSIG delivers at once; the kernel may take a moment to reap). */
export async function killCliAndWaitForVm(cli: ChildProcessWithoutNullStreams, runDirs: string): Promise<string[]> {
  const exited = new Promise((r) => cli.once("exit", r));
  cli.kill("SIGKILL");
  await exited;
  for (let i = 0; i < 50 && leftoverVmProcesses(runDirs).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
  return leftoverVmProcesses(runDirs);
}
