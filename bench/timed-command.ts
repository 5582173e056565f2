// One command timed as a whole, with what GNU time reports of it: the
// wall clock, the CPU time (user and system, children included), the peak
// RSS and the minor page faults (pages touched for the first time, which
// this project's machines charge for: bench/page-cache.ts).
import { spawnSync } from "node:child_process";

export interface Run {
  ms: number;
  rssMiB: number;
  /** User + system CPU time of the command and its children, in ms: what the work cost, which a busy host inflates less than the wall clock. */
  cpuMs: number;
  /** The system part of cpuMs. */
  sysMs: number;
  /** Minor page faults of the command and its children. */
  minorFaults: number;
}

/** A run and what the command printed on stdout (a bench's child may report its own figures there). */
export interface TimedOutput extends Run {
  stdout: string;
}

/** Runs `file` under /usr/bin/time; throws with its stderr when it fails. */
export function timedCommand(file: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env, cwd?: string): TimedOutput {
  const t = performance.now();
  const r = spawnSync("/usr/bin/time", ["-f", "A3S_TIME=%M %U %S %R", file, ...args], { encoding: "utf8", env, cwd, stdio: ["ignore", "pipe", "pipe"], maxBuffer: 1 << 26 });
  const ms = performance.now() - t;
  if (r.status !== 0) throw new Error(`${file} ${args.join(" ")} failed: ${r.stderr}`);
  const m = /A3S_TIME=(\d+) ([\d.]+) ([\d.]+) (\d+)/.exec(r.stderr);
  if (!m) throw new Error(`no timing from /usr/bin/time for ${file}: ${r.stderr}`);
  const [rssKb, user, sys, faults] = [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4])];
  return { ms, rssMiB: rssKb / 1024, cpuMs: (user + sys) * 1000, sysMs: sys * 1000, minorFaults: faults, stdout: r.stdout };
}

/** Several commands' runs as one (a chain of tools): times and faults add up, the peak RSS is the largest. */
export function sumRuns(...parts: Run[]): Run {
  return {
    ms: parts.reduce((n, p) => n + p.ms, 0),
    rssMiB: Math.max(...parts.map((p) => p.rssMiB)),
    cpuMs: parts.reduce((n, p) => n + p.cpuMs, 0),
    sysMs: parts.reduce((n, p) => n + p.sysMs, 0),
    minorFaults: parts.reduce((n, p) => n + p.minorFaults, 0),
  };
}
