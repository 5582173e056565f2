import { spawn, type SpawnOptions } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import { A3sError } from "../errors.js";

/**
 * Said beside every "install this" hint: `a3s-rootfs doctor` lists every host
 * requirement with its Debian package, and `--fix` installs what is missing.
 */
export const DOCTOR_HINT = "a3s-rootfs doctor checks every host requirement, doctor --fix installs them";

/** Directories searched besides $PATH: mkfs tools live in sbin, which a non-root PATH often lacks. */
const EXTRA_DIRS = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

/**
 * The absolute path of an executable on PATH (or in an sbin directory), or
 * undefined. `dirs` replaces that search list (tests use an empty directory
 * to see the missing-tool error for tools that live in /sbin).
 */
export function findExecutable(name: string, dirs?: readonly string[]): string | undefined {
  const search = dirs ?? [...(process.env.PATH ?? "").split(delimiter).filter(Boolean), ...EXTRA_DIRS];
  for (const dir of search) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; keep looking
    }
  }
  return undefined;
}

/** Like `findExecutable`, but a missing tool is an error that names the Debian package to install, and the doctor. */
export function requireTool(name: string, debianPackage: string, minimum?: string, dirs?: readonly string[]): string {
  const found = findExecutable(name, dirs);
  if (found) return found;
  throw new A3sError(
    "ETOOL",
    `${name} is not installed; it comes with the Debian package ${debianPackage}${minimum ? ` (${minimum} or newer)` : ""}`,
    { subject: name, hint: `apt-get install ${debianPackage}   (${DOCTOR_HINT})` },
  );
}

export interface ToolResult {
  stdout: string;
  /** stdout as raw bytes, for tools that print binary data. */
  stdoutBytes: Buffer;
  stderr: string;
}

/**
 * Runs a host tool to completion, capturing its output. A non-zero exit is an
 * A3sError carrying the tool's own stderr, so the user sees why it failed.
 */
export function runTool(
  file: string,
  args: readonly string[],
  opts: SpawnOptions & { input?: NodeJS.ReadableStream } = {},
): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const { input, ...spawnOpts } = opts;
    const child = spawn(file, args, { ...spawnOpts, stdio: [input ? "pipe" : "ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on("data", (b: Buffer) => out.push(b));
    child.stderr?.on("data", (b: Buffer) => err.push(b));
    if (input && child.stdin) {
      input.on("error", (e) => {
        child.kill("SIGKILL");
        reject(e);
      });
      child.stdin.on("error", () => {
        // The tool closed its input early; its exit status tells what happened.
      });
      input.pipe(child.stdin);
    }
    child.on("error", (e) => reject(new A3sError("ETOOL", `cannot run ${file}: ${e.message}`, { subject: file })));
    child.on("close", (code, signal) => {
      const stdoutBytes = Buffer.concat(out);
      const stderr = Buffer.concat(err).toString();
      if (code === 0) return resolve({ stdout: stdoutBytes.toString(), stdoutBytes, stderr });
      const why = signal ? `was killed by ${signal}` : `exited with status ${code}`;
      reject(
        new A3sError("ETOOL", `${file} ${args.join(" ")} ${why}: ${stderr.trim().split("\n").slice(-5).join("\n")}`, {
          subject: file,
        }),
      );
    });
  });
}
