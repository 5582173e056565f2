import { readFileSync } from "node:fs";
import { lstat, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * A run's temporary directory (sockets, initrd, console log) is named
 * `a3s-run-PID-START-XXXXXX` in $TMPDIR: PID is the process that owns it and
 * START that process's start time (field 22 of /proc/PID/stat, in clock
 * ticks since the host booted). The owner is written into the name itself,
 * at the moment the directory is created, so there is no instant at which a
 * directory exists without saying whose it is.
 *
 * A run removes its directory when it ends, but a CLI killed with SIGKILL
 * cannot: its QEMU and virtiofsd die with it (die-with-parent.ts) and the
 * directory stays. The next run sweeps such directories. One is removed
 * only when its owner is certainly gone: no process PID, or a process PID
 * that started at another time (the PID was reused). A live run's directory
 * is never touched, whichever process it belongs to. Directories in the
 * older `a3s-run-XXXXXX` form name no owner and are left alone.
 */
const PREFIX = "a3s-run-";
const OWNED = /^a3s-run-(\d+)-(\d+)-[A-Za-z0-9]{6}$/;

export async function createRunDirectory(): Promise<string> {
  return mkdtemp(join(tmpdir(), `${PREFIX}${process.pid}-${processStartTime(process.pid)}-`));
}

/**
 * Removes the run directories in `dir` (default $TMPDIR) whose owner has
 * ended; returns their paths. Only directories (not links) owned by this
 * user are considered; one that cannot be removed is left for next time.
 */
export async function sweepDeadRunDirectories(dir: string = tmpdir()): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const name of names) {
    const m = OWNED.exec(name);
    if (!m) continue;
    const path = join(dir, name);
    const st = await lstat(path).catch(() => undefined);
    if (!st?.isDirectory() || (process.getuid && st.uid !== process.getuid())) continue;
    if (await ownerAlive(Number(m[1]), Number(m[2]))) continue;
    try {
      await rm(path, { recursive: true, force: true });
      removed.push(path);
    } catch {
      // Removed by someone else meanwhile, or not ours to remove: next time.
    }
  }
  return removed;
}

async function ownerAlive(pid: number, start: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  return stat !== undefined && startTimeOf(stat) === start;
}

/** Field 22 of /proc/PID/stat, the start time; the fields are counted after the command name, which may hold spaces and parentheses. */
function startTimeOf(stat: string): number {
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[19]);
}

export function processStartTime(pid: number): number {
  return startTimeOf(readFileSync(`/proc/${pid}/stat`, "utf8"));
}
