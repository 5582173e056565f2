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

/**
 * How a program is run: the host's own (`file`, no prefix), or one
 * provisioned into the cache, run through its bundle's loader (`file` is the
 * loader and `prefix` names the library path and the program). `origin`
 * "cache" also means the host's LD_* variables are not passed on: preloads
 * built against the host's older libc would break the bundle's.
 */
export interface ToolCommand {
  readonly file: string;
  readonly prefix: readonly string[];
  readonly origin: "host" | "cache";
  /** What a person reads in messages: the host's path, or the bundle's directory. */
  readonly label: string;
}

/** The host's program at `path` as a ToolCommand. */
export function hostCommand(path: string): ToolCommand {
  return { file: path, prefix: [], origin: "host", label: path };
}

/** Runs a ToolCommand like `runTool` runs a file. */
export function runToolCommand(cmd: ToolCommand, args: readonly string[], opts: RunToolOptions = {}): Promise<ToolResult> {
  if (cmd.origin === "host") return runTool(cmd.file, args, opts);
  const env = Object.fromEntries(Object.entries(opts.env ?? process.env).filter(([k]) => !k.startsWith("LD_")));
  return runTool(cmd.file, [...cmd.prefix, ...args], { ...opts, env }).catch((e: unknown) => {
    // Named by the program, not by the loader that ran it.
    if (e instanceof ToolFailure) throw new ToolFailure(cmd.label, args, e.why, e.status, e.stderr, e.stdout);
    throw e;
  });
}

export interface ToolResult {
  stdout: string;
  /** stdout as raw bytes, for tools that print binary data. */
  stdoutBytes: Buffer;
  stderr: string;
}

/**
 * A tool that ran and failed: ETOOL, with what a caller needs to explain the
 * failure in the user's terms (the exit status and the whole stderr) rather
 * than pass on the tool's own words.
 */
export class ToolFailure extends A3sError {
  constructor(
    readonly tool: string,
    readonly args: readonly string[],
    /** "exited with status N: last lines of stderr", or how it was killed. */
    readonly why: string,
    readonly status: number | null,
    readonly stderr: string,
    /** What it printed on stdout (e2fsck -p reports its findings there). */
    readonly stdout = "",
  ) {
    super("ETOOL", `${tool} ${args.join(" ")} ${why}`, { subject: tool });
  }
}

/** What `runTool` takes besides spawn's own options. */
export interface RunToolOptions extends SpawnOptions {
  /** Piped to the tool's stdin. */
  readonly input?: NodeJS.ReadableStream;
  /**
   * Writes the tool's stdin itself, instead of `input`: called once with the
   * stdin and expected to end it. A writer that keeps several chunks queued
   * in the pipe (pumpArchiveInto) keeps a fast reader busy where `input`'s
   * pipe() waits for each chunk to drain. A rejection is the input's failure:
   * the tool is killed and the run rejects with it. The tool closing its
   * stdin early is not the feed's failure (the exit status tells what
   * happened), so the feed must resolve then. The run settles only after the
   * feed has, so nothing is still writing when it does.
   */
  readonly feed?: (stdin: NodeJS.WritableStream) => Promise<void>;
  /**
   * Cancels the run: the tool is killed (SIGKILL: a half-written image is
   * thrown away, so there is nothing to let it finish) and awaited, and the
   * promise rejects with the signal's reason once the tool has exited, so a
   * caller's cleanup never races a tool still writing.
   */
  readonly signal?: AbortSignal | undefined;
}

/**
 * Runs a host tool to completion, capturing its output. A non-zero exit is an
 * A3sError carrying the tool's own stderr, so the user sees why it failed.
 */
export function runTool(file: string, args: readonly string[], opts: RunToolOptions = {}): Promise<ToolResult> {
  const { input, feed, signal, ...spawnOpts } = opts;
  if (signal?.aborted) return Promise.reject(signal.reason as Error);
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...spawnOpts, stdio: [input || feed ? "pipe" : "ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let inputError: unknown;
    const onAbort = (): void => {
      child.kill("SIGKILL");
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    child.stdout?.on("data", (b: Buffer) => out.push(b));
    child.stderr?.on("data", (b: Buffer) => err.push(b));
    if (input && child.stdin) {
      input.on("error", (e) => {
        inputError ??= e;
        child.kill("SIGKILL");
      });
      child.stdin.on("error", () => {
        // The tool closed its input early; its exit status tells what happened.
      });
      input.pipe(child.stdin);
    }
    let fed: Promise<void> | undefined;
    if (feed && child.stdin) {
      const stdin = child.stdin;
      stdin.on("error", () => {
        // The tool closed its input early; its exit status tells what happened.
      });
      fed = feed(stdin).catch((e: unknown) => {
        inputError ??= e;
        child.kill("SIGKILL");
      });
    }
    /** Once the tool is gone: its stdin is closed, so a feed still writing stops, and is awaited. */
    const inputDone = async (): Promise<void> => {
      // The input stream stops producing once its consumer is gone.
      if (input && "destroy" in input && typeof input.destroy === "function") (input as { destroy(): void }).destroy();
      if (fed) {
        child.stdin?.destroy();
        await fed;
      }
    };
    child.on("error", (e) => {
      signal?.removeEventListener("abort", onAbort);
      void inputDone().then(() => reject(new A3sError("ETOOL", `cannot run ${file}: ${e.message}`, { subject: file })));
    });
    child.on("close", (code, killedBy) => {
      signal?.removeEventListener("abort", onAbort);
      void inputDone().then(() => settle(code, killedBy));
    });
    const settle = (code: number | null, killedBy: NodeJS.Signals | null): void => {
      if (signal?.aborted) return reject(signal.reason as Error);
      if (inputError !== undefined) return reject(inputError);
      const stdoutBytes = Buffer.concat(out);
      const stderr = Buffer.concat(err).toString();
      if (code === 0) return resolve({ stdout: stdoutBytes.toString(), stdoutBytes, stderr });
      const why = killedBy ? `was killed by ${killedBy}` : `exited with status ${code}`;
      reject(new ToolFailure(file, args, `${why}: ${stderr.trim().split("\n").slice(-5).join("\n")}`, code, stderr, stdoutBytes.toString()));
    };
  });
}
