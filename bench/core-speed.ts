// Benchmark for issue 14's core items, in one run, side by side:
//  1. oci → dir: `a3s-rootfs build oci:L:v2 -o dir:OUT` (empty cache, and a
//     cache hit: the layers already uncompressed in the store) against
//     `umoci unpack` of the same layout (bench/core-speed-layout.ts: the
//     Debian bookworm minbase in two layers), runs interleaved (see
//     settleFilesystem() in stats.ts for why nothing is deleted between them,
//     and DeletionClock for the wait after each unpack, which deletes what
//     the second layer whites out);
//  2. CLI start: `node -e 0` against `a3s-rootfs build scratch --agent A
//     -o cpio:OUT.cpio.gz` (a 1 MB static agent; the installed command,
//     dist/src/cli/a3s-rootfs.cjs, whose code cache the warm-up runs make),
//     runs interleaved; and the
//     same build in process (RootfsBuilder), after warm-up runs;
//  3. memory: the heap a RootfsTree of /usr takes (readDirectoryTree, after
//     a full GC), and the peak RSS of the tar and cpio writers on /usr
//     (bench/archive-writers.ts's child: walk into a tree, write the archive).
// Every command runs under /usr/bin/time (peak RSS, user and system CPU);
// `sync` before each. The machine is shared with other work: the 1-minute
// load average is recorded before and after, and CPU times are given
// beside wall times because they vary less with the load.
//
// Run as root (umoci and our dir output then apply ownership exactly):
//   npm run build && node dist/bench/core-speed.js [RUNS]
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { RootfsBuilder } from "../src/index.js";
import { compileTestBinary } from "../test/helpers/static-binary.js";
import { CORE_LAYOUT_TAG, coreBenchLayout } from "./core-speed-layout.js";
import { INSTALLED_CLI as CLI } from "./installed-cli.js";
import { DeletionClock, machineLine, median, settleFilesystem, SETTLE_MS, timeRuns, writeResults } from "./stats.js";
import { timedCommand, type TimedOutput } from "./timed-command.js";

const RUNS = Number(process.argv[2] ?? 3);
const CLI_RUNS = 20;
const IN_PROCESS_RUNS = 30;
const ARCHIVE_WRITERS = fileURLToPath(new URL("./archive-writers.js", import.meta.url));
const TREE_MEMORY = fileURLToPath(new URL("./core-speed-tree-memory.js", import.meta.url));

/** The 1-minute load average seen before each timed command (the machine may be shared). */
const loadSamples: number[] = [];

/** Runs a command under /usr/bin/time (timedCommand), after a `sync` unless told not to. */
function timed(file: string, args: string[], env: NodeJS.ProcessEnv = process.env, opts: { sync?: boolean } = {}): TimedOutput {
  if (opts.sync ?? true) execFileSync("sync");
  loadSamples.push(loadavg()[0] as number);
  return timedCommand(file, args, env);
}

interface Summary {
  medianMs: number;
  runsMs: number[];
  medianCpuMs: number;
  peakRssMiB: number;
}

function summary(runs: TimedOutput[]): Summary {
  return {
    medianMs: Math.round(median(runs.map((r) => r.ms))),
    runsMs: runs.map((r) => Math.round(r.ms)),
    medianCpuMs: Math.round(median(runs.map((r) => r.cpuMs))),
    peakRssMiB: Math.round(Math.max(...runs.map((r) => r.rssMiB))),
  };
}

const ratio = (a: number, b: number): number => Math.round((a / b) * 100) / 100;

/**
 * What the measured load means for these numbers, from the 1-minute load
 * average before and after the run and before each timed command. The bench itself keeps about one core
 * busy, so the host counts as quiet while both stay under 1.5.
 */
function loadNote(load: { before: number; after: number; lowest: number; highest: number; samples: number }): string {
  const measured = `1-minute load average ${load.before} before the run, ${load.after} after, and between ${load.lowest} and ${load.highest} when sampled before each of the ${load.samples} timed commands`;
  if (Math.max(load.before, load.after, load.highest) < 1.5) return `The host was quiet: ${measured}.`;
  return `The host was busy with other work: ${measured}; wall times vary with that load (CPU times, user + system from /usr/bin/time, vary less).`;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("run as root: umoci unpack and our dir output apply ownership exactly only as root");
  const layout = coreBenchLayout();
  const agent = compileTestBinary({ padBytes: 1024 * 1024 });
  const loadBefore = loadavg()[0] as number;
  const work = mkdtempSync(join(tmpdir(), "a3s-bench-core-"));
  let n = 0;
  const out = (name: string): string => join(work, `${name}-${n++}`);
  try {
    // 1. oci → dir.
    const spec = `oci:${layout}:${CORE_LAYOUT_TAG}`;
    const cold: TimedOutput[] = [];
    const warm: TimedOutput[] = [];
    const umoci: TimedOutput[] = [];
    const leftovers: string[] = [];
    settleFilesystem();
    // umoci's deletions on the host's file system: see DeletionClock.
    const deletions = new DeletionClock();
    for (let i = 0; i < RUNS; i++) {
      const env = { ...process.env, A3S_CACHE_DIR: out("cache") };
      const a = out("ours");
      const b = out("ours");
      const c = out("umoci");
      const ours = (): void => {
        deletions.settle();
        cold.push(timed(process.execPath, [CLI, "build", spec, "-o", `dir:${a}`], env));
        deletions.settle();
        warm.push(timed(process.execPath, [CLI, "build", spec, "-o", `dir:${b}`], env));
      };
      const theirs = (): void => {
        deletions.settle();
        umoci.push(timed("umoci", ["unpack", "--image", `${layout}:${CORE_LAYOUT_TAG}`, c]));
        deletions.deleted();
      };
      // Each tool goes first in every other round: whatever the first
      // command after a round's clean-up pays, both pay it equally often.
      if (i % 2 === 0) {
        ours();
        theirs();
      } else {
        theirs();
        ours();
      }
      leftovers.push(a, `${a}.a3s-metadata.json`, b, `${b}.a3s-metadata.json`, c, env.A3S_CACHE_DIR);
    }
    for (const p of leftovers) rmSync(p, { recursive: true, force: true });

    // 2. CLI start, interleaved so both see the same load; no sync (nothing large is written).
    const bare: TimedOutput[] = [];
    const cli: TimedOutput[] = [];
    const cpioOut = out("scratch.cpio.gz");
    for (let i = 0; i < CLI_RUNS + 2; i++) {
      const b = timed(process.execPath, ["-e", "0"], process.env, { sync: false });
      const c = timed(process.execPath, [CLI, "build", "scratch", "--agent", agent, "-o", `cpio:${cpioOut}`, "--force"], process.env, { sync: false });
      // The first two of each warm the page cache.
      if (i >= 2) {
        bare.push(b);
        cli.push(c);
      }
    }
    const inProcess = await timeRuns(IN_PROCESS_RUNS, 3, async () => {
      await new RootfsBuilder().withAgentBinary(agent).withOutput("cpio", cpioOut).withForce().onWarning(() => {}).build();
    });

    // 3. Memory on /usr.
    const treeRun = timed(process.execPath, ["--expose-gc", TREE_MEMORY, "/usr"]);
    const tree = JSON.parse(treeRun.stdout) as { entries: number; heapMiB: number; walkMs: number };
    const writers: Record<string, TimedOutput & { child: { entries: number; walkMs: number; writeMs: number; rssAfterWalkKiB: number } }> = {};
    for (const format of ["tar", "cpio"]) {
      const archive = out(`usr.${format}`);
      const r = timed(process.execPath, [ARCHIVE_WRITERS, "--child", format, "/usr", archive]);
      rmSync(archive, { force: true });
      writers[format] = { ...r, child: JSON.parse(r.stdout) };
    }

    const round = (x: number): number => Math.round(x * 100) / 100;
    const load = {
      before: round(loadBefore),
      after: round(loadavg()[0] as number),
      lowest: round(Math.min(...loadSamples)),
      highest: round(Math.max(...loadSamples)),
      samples: loadSamples.length,
    };
    const s = { cold: summary(cold), warm: summary(warm), umoci: summary(umoci), bare: summary(bare), cli: summary(cli) };
    const inProcessMs = Math.round(median(inProcess) * 10) / 10;
    const overheadMs = s.cli.medianMs - s.bare.medianMs;
    const json = {
      machine: machineLine(),
      command: "npm run build && node dist/bench/core-speed.js " + RUNS,
      loadAverage1m: load,
      note: loadNote(load),
      ociToDir: {
        image: `Debian bookworm minbase in 2 layers (${spec})`,
        runs: RUNS,
        oursEmptyCache: s.cold,
        oursCacheHit: s.warm,
        umociUnpack: s.umoci,
        speedup: { emptyCache: ratio(s.umoci.medianMs, s.cold.medianMs), cacheHit: ratio(s.umoci.medianMs, s.warm.medianMs), target: 2 },
        cpuRatio: { emptyCache: ratio(s.umoci.medianCpuMs, s.cold.medianCpuMs), cacheHit: ratio(s.umoci.medianCpuMs, s.warm.medianCpuMs) },
      },
      cliStart: {
        runs: CLI_RUNS,
        nodeBare: s.bare,
        buildScratchCpioGz: s.cli,
        overheadMs,
        overheadTargetMs: 60,
        inProcessMedianMs: inProcessMs,
        inProcessRunsMs: inProcess.map((x) => Math.round(x * 10) / 10),
        inProcessTargetMs: 30,
      },
      memory: {
        treeOfUsr: { ...tree, targetMiB: 60 },
        writers: Object.fromEntries(
          Object.entries(writers).map(([f, r]) => [f, { peakRssMiB: Math.round(r.rssMiB), peakRssMB: Math.round((r.rssMiB * 1048576) / 1e6), wallMs: Math.round(r.ms), ...r.child }]),
        ),
        writerTargetMB: 150,
      },
    };
    const row = (name: string, r: Summary): string => `| ${name} | ${r.medianMs} | ${r.runsMs.join(", ")} | ${r.medianCpuMs} | ${r.peakRssMiB} |`;
    const md = [
      "# Core speed: oci → dir, CLI start, tree memory (issue 14 items 2, 4, 5)",
      "",
      `${machineLine()}, ${cpus().length} cores. ${loadNote(load)} Every ratio is from this one run.`,
      "",
      `## oci → dir (median of ${RUNS}, interleaved: each tool first in every other round; \`sync\` before each command; the rounds start ${SETTLE_MS / 1000} s after the set-up, and nothing is deleted until the last is done: see settleFilesystem() in bench/stats.ts; \`umoci unpack\` deletes what the second layer whites out, so every command here starts at least ${SETTLE_MS / 1000} s after the last unpack: DeletionClock)`,
      "",
      `Image: ${json.ociToDir.image}.`,
      "",
      "| command | median ms | runs ms | median CPU ms | peak RSS MiB |",
      "|---|---:|---|---:|---:|",
      row("`a3s-rootfs build oci:L:v2 -o dir:OUT` (empty cache)", s.cold),
      row("same, cache hit (layers already uncompressed in the store)", s.warm),
      row("`umoci unpack --image L:v2 OUT`", s.umoci),
      "",
      `Speed-up (umoci ÷ ours, wall): empty cache ${json.ociToDir.speedup.emptyCache}×, cache hit ${json.ociToDir.speedup.cacheHit}× (target ≥ 2×). CPU: empty cache ${json.ociToDir.cpuRatio.emptyCache}×, cache hit ${json.ociToDir.cpuRatio.cacheHit}×.`,
      "",
      `## CLI start (median of ${CLI_RUNS}, interleaved)`,
      "",
      "| command | median ms | median CPU ms | peak RSS MiB |",
      "|---|---:|---:|---:|",
      `| \`node -e 0\` | ${s.bare.medianMs} | ${s.bare.medianCpuMs} | ${s.bare.peakRssMiB} |`,
      `| \`a3s-rootfs build scratch --agent A -o cpio:OUT.cpio.gz\` (1 MB static agent) | ${s.cli.medianMs} | ${s.cli.medianCpuMs} | ${s.cli.peakRssMiB} |`,
      "",
      "The CLI runs use the build cache, so after the first they are cache hits: the agent is hashed and the cached archive copied and verified. They run the installed command (dist/src/cli/a3s-rootfs.cjs), the bundled CLI compiled with the V8 code cache the warm-up runs made.",
      "",
      `CLI overhead over node's bare start: ${overheadMs} ms (target ≤ 60 ms). In process (RootfsBuilder, the same build, median of ${IN_PROCESS_RUNS} after 3 warm-up runs): ${inProcessMs} ms (target ≤ 30 ms).`,
      "",
      "## Memory on /usr",
      "",
      `RootfsTree of /usr (readDirectoryTree, ${tree.entries} entries): ${tree.heapMiB} MiB of heap after a full GC (target ≤ 60 MiB).`,
      "",
      "| writer | peak RSS | walk ms | write ms |",
      "|---|---:|---:|---:|",
      ...Object.entries(json.memory.writers).map(([f, w]) => `| ${f} (walk /usr into a tree, write the archive to a file) | ${w.peakRssMiB} MiB (${w.peakRssMB} MB) | ${Math.round(w.walkMs)} | ${Math.round(w.writeMs)} |`),
      "",
      "Target: peak RSS ≤ 150 MB.",
      "",
      `Command: \`${json.command}\``,
    ].join("\n");
    writeResults("core-speed", json, md);
    process.stdout.write(md + "\n");
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
