import { readFileSync } from "node:fs";

/**
 * Who a process is, in a form another process can check later: its pid,
 * its start time and the boot it runs in. A pid alone is not enough to say
 * that the writer of a lock or a use record is still running: pids are
 * reused, and a lock left by a process killed yesterday must not be taken
 * for one held by whatever process has that number today.
 *
 * On Linux the start time is field 22 of /proc/PID/stat (clock ticks since
 * boot) and the boot is /proc/sys/kernel/random/boot_id. Where /proc is
 * missing both are "-", and only the pid is checked.
 */
export interface ProcessToken {
  readonly pid: number;
  readonly start: string;
  readonly boot: string;
}

let bootId: string | undefined;

function currentBoot(): string {
  bootId ??= readText("/proc/sys/kernel/random/boot_id")?.trim() || "-";
  return bootId;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/** The start time of `pid` from /proc, or undefined when there is no such process (or no /proc). */
function startTime(pid: number): string | undefined {
  const stat = readText(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  // The command name (field 2) is in parentheses and may hold spaces and ")":
  // the fields after the last ")" start at field 3, so field 22 is the 20th.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return fields[19];
}

let own: ProcessToken | undefined;

/** This process. */
export function processToken(): ProcessToken {
  own ??= { pid: process.pid, start: startTime(process.pid) ?? "-", boot: currentBoot() };
  return own;
}

/** "PID START BOOT", as written in lock files and use records. */
export function formatProcessToken(t: ProcessToken): string {
  return `${t.pid} ${t.start} ${t.boot}`;
}

/** Parses what formatProcessToken wrote; undefined for anything else. */
export function parseProcessToken(text: string): ProcessToken | undefined {
  const m = /^(\d{1,10}) (\d{1,20}|-) ([0-9a-f-]{1,64})$/.exec(text.trim());
  if (!m) return undefined;
  return { pid: Number(m[1]), start: m[2]!, boot: m[3]! };
}

/**
 * Whether the process a token names is still running: the same pid, started
 * at the same time, in this boot. A token from another boot (a cache on a
 * disk that survived a reboot) names a process that is gone.
 */
export function processAlive(t: ProcessToken): boolean {
  if (t.boot !== currentBoot()) return false;
  if (t.pid === process.pid) return t.start === processToken().start;
  if (t.start !== "-") {
    const now = startTime(t.pid);
    if (now !== undefined) return now === t.start;
    // No /proc entry: on Linux the process is gone.
    if (currentBoot() !== "-") return false;
  }
  try {
    process.kill(t.pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
