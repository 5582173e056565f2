import { spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { A3sError } from "../errors.js";

export interface MakeOptions {
  /** The directory make runs in (the kernel source tree). */
  readonly cwd: string;
  readonly args: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  /** Every line of output is appended here. */
  readonly logFile: string;
  /** Called for each build step kbuild reports ("  CC      kernel/fork.o"), with the count so far. */
  readonly onStep?: (steps: number, line: string) => void;
  /** Aborting stops make and everything it started. */
  readonly signal?: AbortSignal;
  /** What this make is for, in errors ("configuring the kernel"). */
  readonly what: string;
}

/** kbuild's quiet output: two spaces, a short upper-case tag, then the target. */
const STEP = /^ {2}[A-Z][A-Z0-9_-]*\s+\S/;
/** Lines kept for an error message. */
const TAIL_LINES = 25;

/**
 * Runs make (or a kbuild script) to completion. It runs in a process group
 * of its own, so stopping it on abort reaches every compiler it started, and
 * a Ctrl-C at the terminal reaches it only through our handler (the CLI's),
 * which waits for it to be gone before cleaning up. Resolves with the number
 * of build steps seen; a failure is an error with the last lines of output.
 */
export function runKbuild(command: string, opts: MakeOptions): Promise<number> {
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) return reject(kernelBuildAborted());
    const log = createWriteStream(opts.logFile, { flags: "a" });
    const child = spawn(command, opts.args, { cwd: opts.cwd, env: opts.env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    const tail: string[] = [];
    let steps = 0;
    const onLine = (line: string): void => {
      tail.push(line);
      if (tail.length > TAIL_LINES) tail.shift();
      if (STEP.test(line)) {
        steps++;
        opts.onStep?.(steps, line);
      }
    };
    for (const stream of [child.stdout, child.stderr]) {
      let partial = "";
      stream.on("data", (b: Buffer) => {
        log.write(b);
        const lines = (partial + b.toString()).split("\n");
        partial = lines.pop() ?? "";
        lines.forEach(onLine);
      });
      stream.on("end", () => {
        if (partial) onLine(partial);
      });
    }
    const stop = (): void => {
      // The whole group: make's children are compilers and sub-makes.
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, "SIGTERM");
        } catch {
          // already gone
        }
      }
    };
    opts.signal?.addEventListener("abort", stop, { once: true });
    child.on("error", (e) => {
      opts.signal?.removeEventListener("abort", stop);
      log.end();
      reject(new A3sError("ETOOL", `cannot run ${command} (${opts.what}): ${e.message}`, { subject: command }));
    });
    child.on("close", (code, signal) => {
      opts.signal?.removeEventListener("abort", stop);
      // Anything the group left behind (a compiler that ignored SIGTERM) goes too.
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, "SIGKILL");
        } catch {
          // nothing left
        }
      }
      log.end(() => {
        if (opts.signal?.aborted) return reject(kernelBuildAborted());
        if (code === 0) return resolve(steps);
        const why = signal ? `was killed by ${signal}` : `exited with status ${code}`;
        reject(new A3sError("EKBUILD", `${opts.what} failed: ${command} ${why}:\n${tail.join("\n")}`, { subject: opts.logFile }));
      });
    });
  });
}

/** The error of an interrupted kernel build. */
export function kernelBuildAborted(): A3sError {
  return new A3sError("EABORTED", "the kernel build was interrupted; nothing was published");
}
