/** Small helpers shared by the benchmarks: timing, medians, result files and a settled filesystem. */
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/**
 * The order of one round of boots: round 1 as given, each later round
 * starting one item further on, so that over the rounds every item boots in
 * every place. On this machine a boot's speed depends on the boot before
 * it: in alternated A/B pairs the second of each pair was the faster by
 * 150-200 ms, whichever variant it was (12 of 14 pairs, in both orders),
 * so a fixed order would favour some rows over others.
 */
export function rotated<T>(items: readonly T[], round: number): T[] {
  return items.map((_, i) => items[(i + round - 1) % items.length] as T);
}

/** Runs `fn` `runs` times after `warmup` unmeasured runs; returns each run's milliseconds. */
export async function timeRuns(runs: number, warmup: number, fn: () => Promise<void> | void): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    times.push(performance.now() - t);
  }
  return times;
}

export const resultsDir = fileURLToPath(new URL("../../bench/results/", import.meta.url));

/** Writes NAME.json and NAME.md into bench/results. */
export function writeResults(name: string, json: unknown, markdown: string): void {
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(join(resultsDir, `${name}.json`), JSON.stringify(json, null, 2) + "\n");
  writeFileSync(join(resultsDir, `${name}.md`), markdown.endsWith("\n") ? markdown : markdown + "\n");
}

/** A line describing the machine, for result files. */
export function machineLine(): string {
  const memory = hostMemoryNote();
  return `node ${process.version}, ${process.platform}/${process.arch}, ${new Date().toISOString().slice(0, 10)}${memory ? `; ${memory}` : ""}`;
}

/**
 * What makes file-heavy timings on this machine vary from run to run with
 * nothing else running, when the host does it: this machine is itself a VM
 * whose freed memory goes back to its host (virtio-balloon free page
 * reporting) and whose kernel pages out page cache unused for a while
 * (DAMON, whose counters here showed it paging out at its quota). Neither
 * was traced into the host. What a fresh page costs to touch moves with
 * the machine and the day: 1.3-2.0 us on one machine; on another, 200 MB
 * written into a new file took 0.45-0.70 s of system time (about 10 us a
 * page; the same 200 MB over the file's cached pages 0.02 s, with O_DIRECT
 * 0.18 s), and 200 MB of new anonymous memory 0.49 s in one process and
 * 0.16 s in the next, which got the pages the first had just freed, before
 * they were reported. So a command run a few seconds after the last one
 * pays for every page it touches, and the same command run at once after
 * another does not: an `oci:` build to erofs took 1.55-1.75 s (0.6-0.75 s of
 * system time) in a loop, 2.0-3.0 s (1.1-2.2 s) with 4 s of idling or
 * `umoci unpack` between runs. Seen with nothing else running: the same
 * `build -o cpio` of the minbase image took 0.90-1.0 s in one minute and
 * 1.16-1.30 s in another, and a warm rebuild's 63 MB copy took 0.15 s into
 * memory just freed by deleting a file against 0.22-0.33 s into fresh
 * memory. The DAMON scheme seen on 2026-12-03: `paddr`, `pageout` of any
 * region not accessed for 12 aggregations of 5 s (a minute), at most
 * 128 MiB a second, no watermarks. The CPU slowed under sustained load
 * too, in one minute measured that day: a pure Python loop's count per 2 s
 * fell from 7,512 in its first 2 s to 4,570-6,923 (median 5,356) in its
 * second half-minute while a shell loop kept the other core busy, with no
 * steal time in vmstat; and in the OCI bench's first round, which follows
 * a minute of idling, ours ran fastest in every row. A minute's idling by
 * itself did not slow the next command: the core bench's `oci:` → dir
 * build, new cache and output each time, took 0.94-1.09 s (and once 2.13 s)
 * 5 s after the one before and 1.09 and 1.13 s after 65 s of idling; a
 * layer blob read just before 100 s of idling was 94 % in the page cache
 * after it. Paired, interleaved runs and their ratios are what these
 * results compare. What did slow the OCI bench's later rounds is the page
 * cache its kept outputs grew: with 8 GiB more of it, the same oci → dir
 * build took 1.73 s (1.54 s of system time) against 1.30 s (1.01 s) with
 * it emptied, where `umoci unpack`, which touches half as many new pages,
 * went from 2.98 to 3.17 s (bench/results/page-cache-state.md). So that
 * bench empties the page cache before each command but the warm rebuilds
 * (bench/page-cache.ts).
 */
function hostMemoryNote(): string | undefined {
  const notes: string[] = [];
  try {
    const features = readFileSync(`/sys/bus/virtio/drivers/virtio_balloon/${readdirSync("/sys/bus/virtio/drivers/virtio_balloon").find((d) => d.startsWith("virtio")) ?? "-"}/features`, "utf8");
    // Feature bit 5: VIRTIO_BALLOON_F_REPORTING (free page reporting).
    if (features[5] === "1") notes.push("freed memory is reported back to the host (virtio-balloon)");
  } catch {
    // no balloon: memory stays with this machine
  }
  try {
    const kdamonds = "/sys/kernel/mm/damon/admin/kdamonds";
    if (readdirSync(kdamonds).some((d) => /^\d+$/.test(d) && readFileSync(join(kdamonds, d, "state"), "utf8").trim() === "on")) notes.push("DAMON pages out idle memory");
  } catch {
    // no DAMON
  }
  return notes.length ? `${notes.join(", ")}: absolute times vary between identical runs, compare the ratios` : undefined;
}

/**
 * How long to wait, after `sync`, before timed commands that create many
 * files (a dir output, `umoci unpack`). This VM's root is ext4 without a
 * journal, and such an ext4, when it allocates an
 * inode, skips every inode deleted in the last 60 s (360 s while its
 * inode-table block is dirty), reading each one's deletion time on the way
 * (perf: find_get_block_common under recently_deleted, under ext4_create).
 * After thousands of files were deleted, creating files costs several times
 * more system time for a minute or more: `tar -x` of the minbase layer took
 * 2.5-2.7 s of system time right after deleting the previous extraction,
 * against 0.3 s otherwise. So a bench deletes nothing between such commands
 * (every output stays until the last round is done), and starts them this
 * long after its own set-up and whatever ran before it.
 */
export const SETTLE_MS = 60_000;

export function settleFilesystem(): void {
  execFileSync("sync");
  execFileSync("sleep", [String(SETTLE_MS / 1000)]);
}

/**
 * When the last command that deleted many files on the host's file system
 * ended, so that a command creating many files there can wait the rest of
 * SETTLE_MS first. A bench that deletes nothing itself still runs one such
 * command: `umoci unpack` writes each layer in turn and then deletes what a
 * later layer whites out (2,649 entries of the bench image's first layer).
 * Measured by hand right after one (2026-12-03): our oci → dir build took
 * 1.39 s (1.43 s of system time) against 0.91 s (0.42 s) on the settled
 * file system and 0.86 s the time after, with 19 % of `perf`'s samples in
 * recently_deleted and 5 % in the other thread spinning on the directory
 * lock it held; `umoci unpack` itself took 2.80 s against 2.44 s. (The OCI
 * bench's runs of ours were still fastest by far in its first round, in
 * every row, image outputs included, with this clock as without it: that
 * was the page cache the kept outputs grew, see hostMemoryNote().)
 */
export class DeletionClock {
  private last: number | undefined;

  /** A command that deleted many files has just ended. */
  deleted(): void {
    this.last = performance.now();
  }

  /** `sync`, then sleep out what is left of SETTLE_MS since the last deletion (none yet: no wait). */
  settle(): void {
    execFileSync("sync");
    if (this.last === undefined) return;
    const left = this.last + SETTLE_MS - performance.now();
    if (left > 0) execFileSync("sleep", [(left / 1000).toFixed(3)]);
  }
}
