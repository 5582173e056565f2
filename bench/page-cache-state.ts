// Benchmark: what the size of the host's page cache does to an oci → dir
// build, ours and `umoci unpack` side by side (the image of the OCI bench,
// bench/minbase-layout.ts). On this project's machines a page touched for
// the first time costs more when the guest already holds gigabytes of page
// cache, and our build touches about twice as many new pages as umoci (the
// layer's tar in the layer store, then the files), so the OCI bench's
// ratios depended on how much its earlier rounds had left in the cache.
// Three states, in this order:
//   emptied   every command starts from startFromEmptyPageCache() (the
//             layout and both sides' programs read back in);
//   filled    FILL_GIB (default 8) GiB of page cache added first, by copying
//             one unpacked tree over and over (many files, as a bench's
//             outputs are); nothing dropped, and each command waits out
//             umoci's deletions (DeletionClock);
//   emptied   again, as the first.
// In each, PAIRS (default 3) pairs, ours first in even pairs and theirs
// first in odd ones. Ours: a3s-rootfs build oci:L:v2 -o dir:OUT --no-cache
// with an empty A3S_CACHE_DIR each time.
// Run as root:  npm run build && node dist/bench/page-cache-state.js
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { INSTALLED_CLI as CLI } from "./installed-cli.js";
import { minbaseLayout } from "./minbase-layout.js";
import { pageCacheMiB, programFiles, startFromEmptyPageCache } from "./page-cache.js";
import { DeletionClock, machineLine, median, settleFilesystem, SETTLE_MS, writeResults } from "./stats.js";
import { timedCommand, type Run } from "./timed-command.js";

const PAIRS = Number(process.env.PAIRS ?? 3);
const FILL_GIB = Number(process.env.FILL_GIB ?? 8);

interface Side {
  runs: Run[];
  /** The page cache's size as each command started, MiB. */
  cacheMiB: number[];
}
interface State {
  name: string;
  ours: Side;
  theirs: Side;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("run as root: dropping the page cache and umoci unpack's ownership need it");
  const layout = minbaseLayout();
  const work = mkdtempSync(join(tmpdir(), "a3s-bench-page-cache-"));
  let n = 0;
  const path = (name: string): string => join(work, `${n++}-${name}`);
  const deletions = new DeletionClock();
  const loadBefore = loadavg();
  try {
    // The tree the fill copies, unpacked untimed.
    const fillSource = path("fill-source");
    execFileSync("umoci", ["unpack", "--image", `${layout}:v2`, fillSource], { stdio: "ignore" });
    settleFilesystem();
    deletions.deleted();

    const states: State[] = [];
    const measure = (name: string, before: () => void): void => {
      const state: State = { name, ours: { runs: [], cacheMiB: [] }, theirs: { runs: [], cacheMiB: [] } };
      const timed = (side: Side, file: string, args: string[], env?: NodeJS.ProcessEnv): Run => {
        before();
        side.cacheMiB.push(pageCacheMiB());
        const run = timedCommand(file, args, env);
        side.runs.push(run);
        return run;
      };
      for (let i = 0; i < PAIRS; i++) {
        const ours = (): void => {
          const cache = path("cache");
          mkdirSync(cache);
          timed(state.ours, process.execPath, [CLI, "build", `oci:${layout}:v2`, "-o", `dir:${path("ours.dir")}`, "--no-cache"], { ...process.env, A3S_CACHE_DIR: cache });
        };
        const theirs = (): void => {
          timed(state.theirs, "umoci", ["unpack", "--image", `${layout}:v2`, path("umoci")]);
          deletions.deleted();
        };
        for (const side of i % 2 === 0 ? [ours, theirs] : [theirs, ours]) side();
      }
      states.push(state);
    };
    // What both sides read: the image, and the programs they run.
    const inputs = [layout, CLI, ...programFiles([process.execPath, "umoci", "igzip", "prlimit"])];
    const emptied = (): void => startFromEmptyPageCache(inputs);
    measure("emptied", emptied);
    startFromEmptyPageCache(inputs);
    const start = pageCacheMiB();
    let copies = 0;
    while (pageCacheMiB() - start < FILL_GIB * 1024) {
      execFileSync("cp", ["-a", fillSource, path("fill")]);
      copies++;
    }
    execFileSync("sync");
    settleFilesystem();
    const filledTo = pageCacheMiB();
    measure("filled", () => deletions.settle());
    measure("emptied again", emptied);
    const loadAfter = loadavg();

    const med = (xs: readonly number[]): number => Math.round(median(xs));
    const summary = (s: Side) => ({
      wallMs: med(s.runs.map((r) => r.ms)),
      cpuMs: med(s.runs.map((r) => r.cpuMs)),
      sysMs: med(s.runs.map((r) => r.sysMs)),
      minorFaults: med(s.runs.map((r) => r.minorFaults)),
      pageCacheMiB: med(s.cacheMiB),
      wallRuns: s.runs.map((r) => Math.round(r.ms)),
      sysRuns: s.runs.map((r) => Math.round(r.sysMs)),
    });
    const ratio = (theirs: number, ours: number): number => Math.round((theirs / ours) * 100) / 100;
    const rows = states.map((s) => {
      const ours = summary(s.ours);
      const theirs = summary(s.theirs);
      return { state: s.name, ours, theirs, speedup: ratio(theirs.wallMs, ours.wallMs), cpuRatio: ratio(theirs.cpuMs, ours.cpuMs) };
    });
    const round2 = (xs: number[]): number[] => xs.map((x) => Math.round(x * 100) / 100);
    const json = {
      machine: machineLine(),
      command: "node dist/bench/page-cache-state.js",
      pairs: PAIRS,
      fill: { gib: FILL_GIB, copies, pageCacheMiBAfter: filledTo },
      loadAverage: { before: round2(loadBefore), after: round2(loadAfter) },
      states: rows,
    };
    const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
    const md = [
      "# The page cache's size and an oci → dir build: ours against `umoci unpack`",
      "",
      `${json.machine}; 2 cores. 1/5/15-minute load average ${json.loadAverage.before.join(" / ")} before, ${json.loadAverage.after.join(" / ")} after.`,
      `${PAIRS} pairs per state, ours first in even pairs; medians. The image: Debian bookworm minbase + a second layer (bench/minbase-layout.ts). Ours: \`a3s-rootfs build oci:L:v2 -o dir:OUT --no-cache\`, an empty A3S_CACHE_DIR each time.`,
      `"emptied": \`sync\`, the page cache, dentries and inodes dropped, the layout and both sides' programs (node and the CLI, igzip, prlimit; umoci) read back in, 3 s idle, before every command. "filled": first ${copies} copies of one unpacked tree (${FILL_GIB} GiB of page cache added; ${filledTo} MiB cached after), nothing dropped, every command ${SETTLE_MS / 1000} s or more after umoci's deletions.`,
      "",
      "| state | page cache at the start | ours | theirs | speed-up | CPU ours / theirs | system time ours / theirs | minor faults ours / theirs |",
      "|---|---|---|---|---|---|---|---|",
      ...rows.map(
        (r) =>
          `| ${r.state} | ${(r.ours.pageCacheMiB / 1024).toFixed(1)} GiB | ${s(r.ours.wallMs)} | ${s(r.theirs.wallMs)} | **${r.speedup}×** | ${s(r.ours.cpuMs)} / ${s(r.theirs.cpuMs)} (${r.cpuRatio}×) | ${s(r.ours.sysMs)} / ${s(r.theirs.sysMs)} | ${r.ours.minorFaults} / ${r.theirs.minorFaults} |`,
      ),
      "",
      "Each run (wall ms; system ms):",
      "",
      ...rows.map((r) => `- ${r.state}: ours ${r.ours.wallRuns.join(", ")} (${r.ours.sysRuns.join(", ")}); theirs ${r.theirs.wallRuns.join(", ")} (${r.theirs.sysRuns.join(", ")})`),
      "",
      "Minor faults count the processes' own first touches of memory; the pages each side writes into the page cache (ours: the layer's tar in the layer store, about 170 MB, then the tree, about 124 MB; umoci: the tree) are new pages too, and not in that count.",
      "",
      "Command: `npm run build && node dist/bench/page-cache-state.js` (as root; PAIRS=3, FILL_GIB=8 by default; about 10 minutes).",
    ].join("\n");
    writeResults("page-cache-state", json, md);
    process.stdout.write(md + "\n");
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
