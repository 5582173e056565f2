// The host's page cache as a bench condition. On this project's machines
// (themselves VMs whose freed memory goes back to their host), a page the
// guest touches for the first time costs more the more page cache the
// guest already holds: bench/page-cache-state.ts measures it, side by side
// for our dir build and `umoci unpack`. A bench that keeps every output
// until its end grows the page cache by gigabytes as it runs, so its later
// rounds run on a dearer machine than its first, and the side that touches
// more new pages pays more of it. startFromEmptyPageCache() gives every
// timed command the same start instead.
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync, realpathSync, writeFileSync } from "node:fs";

/**
 * How long to wait after dropping the page cache: the guest hands freed
 * memory back to its host in the background (virtio-balloon free page
 * reporting waits 2 s before it reports), and a command started at once
 * would race that.
 */
const AFTER_DROP_MS = 3000;

/** The page cache's size now (`Cached` in /proc/meminfo), in MiB. */
export function pageCacheMiB(): number {
  const kb = /^Cached:\s+(\d+) kB/m.exec(readFileSync("/proc/meminfo", "utf8"))?.[1];
  return Math.round(Number(kb) / 1024);
}

/**
 * The files the named programs run from, to read back in after a drop:
 * each program (a bare name looked up in PATH; one not found is left out,
 * as it is not run either) and the shared libraries `ldd` lists for it.
 */
export function programFiles(programs: readonly string[]): string[] {
  const files = new Set<string>();
  for (const program of programs) {
    const found = program.includes("/") ? program : spawnSync("sh", ["-c", 'command -v "$1"', "sh", program], { encoding: "utf8" }).stdout.trim();
    if (!found) continue;
    files.add(realpathSync(found));
    const libraries = spawnSync("ldd", [found], { encoding: "utf8" }).stdout ?? "";
    for (const m of libraries.matchAll(/(\/\S+) \(0x/g)) files.add(realpathSync(m[1] as string));
  }
  return [...files];
}

/**
 * `sync`, then drop the clean page cache, dentries and inodes (root only),
 * read `inputs` (files, or directories read whole) back into the page
 * cache, and wait AFTER_DROP_MS. Every side of a pair then starts with its
 * inputs cached and nothing else, whatever ran before it.
 */
export function startFromEmptyPageCache(inputs: readonly string[]): void {
  execFileSync("sync");
  writeFileSync("/proc/sys/vm/drop_caches", "3\n");
  if (inputs.length > 0) execFileSync("sh", ["-c", 'find "$@" -type f -exec cat {} + > /dev/null', "sh", ...inputs]);
  execFileSync("sleep", [String(AFTER_DROP_MS / 1000)]);
}
