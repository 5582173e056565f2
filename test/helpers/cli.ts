import { spawn, spawnSync, type SpawnSyncReturns } from "node:child_process";
import { fileURLToPath } from "node:url";

/** The installed command (package.json "bin"): the launcher of the bundled CLI, with its code cache. */
export const CLI = fileURLToPath(new URL("../../src/cli/a3s-rootfs.cjs", import.meta.url));
/** The CLI's ES module entry as tsc compiled it, which the bundle is made from. */
export const CLI_MODULE = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

/** Runs the real CLI in a child process. */
export function runCli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [CLI, ...args], {
    encoding: "utf8",
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
  });
}

/**
 * Runs the real CLI without blocking this process: for tests whose servers
 * (a fault proxy, a token server) live in the test process itself.
 */
export function runCliAsync(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    child.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}
