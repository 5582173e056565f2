// Benchmark: an OCI image straight to a bootable image, side by side with
// the tools a user would chain, every pair from the same run:
//   oci → dir, erofs, ext4, squashfs, cpio:
//     ours:   a3s-rootfs build oci:L:v2 -o FORMAT:OUT --no-cache   (an empty layer store every run)
//     theirs: umoci unpack --image L:v2 B  +  the host's mkfs tool on B/rootfs
//             (for dir, umoci unpack alone: B/rootfs is the directory)
//   registry → erofs:
//     ours:   a3s-rootfs build docker://REF -o erofs:OUT --no-cache (empty store)
//     theirs: skopeo copy docker://REF oci:L2:v2 + umoci unpack + mkfs.erofs
//   the warm rebuild: the same build twice with the build cache on, cold then
//     warm to the same OUT, then once more to a new OUT.
// The image: Debian bookworm minbase + a second umoci layer (bench/minbase-layout.ts).
// Every "empty cache" of ours holds the Debian 13 tool bundles (erofs-utils
// 1.8, squashfs-tools 4.6) copied in untimed, and what an untimed scratch
// build learnt of the tools, as after the first build on a Debian 12 host;
// nothing else. ext4: the size ours computes; cpio:
// uncompressed newc on both sides. erofs and squashfs: our writers choose a
// compression level by measurement (lz4hc 4, zstd 3; formats/erofs/writer.ts
// and formats/squashfs/writer.ts say why), so theirs runs twice from the same
// unpack: as a user types it (`-zlz4hc`, lz4hc's level 9; `-comp zstd`,
// mksquashfs's level 15), and like for like at our level. Both ratios are
// printed; the registry pull's theirs is like for like.
// dir once more on a new ext4 (mkfs.ext4's defaults, with its journal,
// loop-mounted in the work directory): ours with its layer store there too,
// theirs unpacking there. The host's own file system may be set up otherwise
// (this machine's has no journal, where a file's creation scans past every
// inode deleted in the last minutes) and is in whatever state earlier work
// left it; the new one shows the writers on the file system most hosts have.
// Nothing is deleted until the last timed command, and the first starts a
// minute after the set-up (settleFilesystem() in stats.ts says why). But
// `umoci unpack` deletes what the second layer whites out, so every command
// that creates many files on the host's file system (each unpack there, and
// our dir output) starts at least that minute after the last unpack there
// (DeletionClock in stats.ts). Within each pair, ours goes first in even
// runs and theirs in odd ones.
// Every timed command but the warm rebuilds starts from an emptied page
// cache with its inputs and both sides' programs read back in
// (startFromEmptyPageCache in page-cache.ts): on this project's machines a
// new page costs more the more page cache the machine holds, and the
// outputs kept until the end grew it by gigabytes a round, so each round
// ran on a dearer machine than the one before (bench/page-cache-state.ts).
// The 1-minute load average is sampled before every timed command (the
// machine is shared); the header gives it before, after and at its highest.
// Run as root:  npm run build && node dist/bench/oci-images.js   (BENCH_RUNS=N, default 3)
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { cacheRoot } from "../src/util/cache-dir.js";
import { EROFS_LZ4HC_LEVEL } from "../src/formats/erofs/index.js";
import { SQUASHFS_ZSTD_LEVEL } from "../src/formats/squashfs/index.js";
import { cachedImageTool } from "../src/provision/index.js";
import { guestProgramPath } from "../src/programs/index.js";
import { startRegistry } from "../test/helpers/registry.js";
import { minbaseLayout } from "./minbase-layout.js";
import { INSTALLED_CLI as CLI } from "./installed-cli.js";
import { programFiles, startFromEmptyPageCache } from "./page-cache.js";
import { DeletionClock, machineLine, median, settleFilesystem, SETTLE_MS, writeResults } from "./stats.js";
import { sumRuns, timedCommand, type Run } from "./timed-command.js";

const RUNS = Number(process.env.BENCH_RUNS ?? 3);

/** 1-minute load averages seen before each timed command. */
const loadSamples: number[] = [];

/** The programs both sides run, read back in with every command's inputs. */
const programs = programFiles([process.execPath, CLI, "igzip", "prlimit", "umoci", "skopeo", "mkfs.erofs", "mksquashfs", "mke2fs", "cpio", "find", "sh"]);

/**
 * One timed command. `reads`: start it from an emptied page cache with these
 * read back in (startFromEmptyPageCache; every command but the warm
 * rebuilds, which time what the cold build left in the cache). Either way a
 * `sync` first, so no one pays for the writes of the one before.
 */
function timed(file: string, args: string[], opts: { reads: readonly string[] | "keep the page cache"; env?: NodeJS.ProcessEnv; cwd?: string }): Run {
  if (opts.reads === "keep the page cache") execFileSync("sync");
  else startFromEmptyPageCache([...opts.reads, ...programs]);
  loadSamples.push(loadavg()[0] as number);
  return timedCommand(file, args, opts.env, opts.cwd);
}

/** The installed version of a Debian package (mkfs.erofs 1.5 prints none of its own). */
function debianVersion(pkg: string): string {
  const r = spawnSync("dpkg-query", ["-W", "-f", "${Version}", pkg], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : "unknown";
}

const med = (runs: readonly Run[]): number => Math.round(median(runs.map((r) => r.ms)));
const medCpu = (runs: readonly Run[]): number => Math.round(median(runs.map((r) => r.cpuMs)));
/** Bytes a directory tree holds (GNU du's apparent size). */
const diskBytes = (dir: string): number => Number(execFileSync("du", ["-sb", dir], { encoding: "utf8" }).split("\t")[0]);

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("run as root: umoci unpack and the plain mkfs tools then keep ownership exactly");
  const layout = minbaseLayout();
  const bundles = ["erofs-utils", "squashfs-tools"].map((k) => join(cacheRoot(), k));
  const erofsTool = await cachedImageTool(cacheRoot(), "mkfs.erofs");
  const squashfsTool = await cachedImageTool(cacheRoot(), "mksquashfs");
  if (!erofsTool || !squashfsTool) throw new Error("provision the tools first: run any build with -o erofs:... and -o squashfs:... once");
  const work = mkdtempSync(join(tmpdir(), "a3s-bench-oci-images-"));
  let n = 0;
  const path = (name: string): string => join(work, `${n++}-${name}`);
  // Removed only after the last timed command: see settleFilesystem().
  const leftovers: string[] = [];
  const clean = (...paths: (string | undefined)[]): void => {
    for (const p of paths) if (p) leftovers.push(p);
  };
  /**
   * A fresh A3S_CACHE_DIR holding only what a first build leaves: the tool
   * bundles, and what they were found to do (tool-capability-memo.ts: by the
   * copies' own identity, so an untimed scratch build to each image format
   * learns it).
   */
  const freshCache = (at: (name: string) => string = path): NodeJS.ProcessEnv => {
    const dir = at("cache");
    mkdirSync(dir);
    for (const b of bundles) cpSync(b, join(dir, b.split("/").pop() as string), { recursive: true });
    const env = { ...process.env, A3S_CACHE_DIR: dir };
    const first = at("first-build");
    const outputs = ["erofs", "squashfs", "ext4"].flatMap((f) => ["-o", `${f}:${first}.${f}`]);
    execFileSync(process.execPath, [CLI, "build", "scratch", "--agent", guestProgramPath("probe"), ...outputs, "--no-cache"], { env, stdio: "ignore" });
    clean(...["erofs", "squashfs", "ext4"].map((f) => `${first}.${f}`));
    return env;
  };

  const loadBefore = loadavg();
  const registry = await startRegistry();
  let newFs: NewExt4 | undefined;
  try {
    newFs = mountNewExt4(work);
    const newFsRoot = newFs.mountpoint;
    const onNewFs = (name: string): string => join(newFsRoot, `${n++}-${name}`);
    const ref = `${registry.host}/bench/minbase:v2`;
    execFileSync("skopeo", ["copy", "--quiet", "--dest-tls-verify=false", `oci:${layout}:v2`, `docker://${ref}`], { stdio: ["ignore", "ignore", "inherit"] });
    const formats = ["dir", "erofs", "ext4", "squashfs", "cpio"] as const;
    const ours: Record<string, Run[]> = Object.fromEntries(formats.map((f) => [f, []]));
    const theirs: Record<string, Run[]> = Object.fromEntries(formats.map((f) => [f, []]));
    const theirsUnpack: Run[] = [];
    /** Like for like: theirs at our compression level, from the same unpack. */
    const sameLevel: Record<"erofs" | "squashfs", { runs: Run[]; bytes: number }> = { erofs: { runs: [], bytes: 0 }, squashfs: { runs: [], bytes: 0 } };
    /** dir on the new ext4. */
    const newFsOurs: Run[] = [];
    const newFsTheirs: Run[] = [];
    const pullOurs: Run[] = [];
    const pullTheirs: Run[] = [];
    const cold: Run[] = [];
    const warm: Run[] = [];
    const warmNewPath: Run[] = [];
    const sizes: Record<string, { ours: number; theirs: number }> = {};
    settleFilesystem();
    // umoci's deletions on the host's file system: see DeletionClock.
    const deletions = new DeletionClock();
    const unpackOnHost = (layoutDir: string, bundle: string): Run => {
      deletions.settle();
      const run = timed("umoci", ["unpack", "--image", `${layoutDir}:v2`, bundle], { reads: [layoutDir] });
      deletions.deleted();
      return run;
    };
    /** Our ext4 image's size, which theirs is made at: the same every run (reproducible output). */
    let ext4Bytes: number | undefined;
    for (let i = 0; i < RUNS; i++) {
      for (const format of formats) {
        const env = freshCache();
        const out = path(`ours.${format}`);
        const runOurs = (): void => {
          if (format === "dir") deletions.settle();
          ours[format]?.push(timed(process.execPath, [CLI, "build", `oci:${layout}:v2`, "-o", `${format}:${out}`, "--no-cache"], { reads: [layout, env.A3S_CACHE_DIR as string], env }));
          if (format === "ext4") ext4Bytes ??= statSync(out).size;
        };
        // Each side goes first in every other run, so neither always follows the other's work.
        const oursFirst = i % 2 === 0;
        if (oursFirst) runOurs();
        const bundle = path("umoci");
        const unpack = unpackOnHost(layout, bundle);
        theirsUnpack.push(unpack);
        const rootfs = join(bundle, "rootfs");
        const img = path(`theirs.${format}`);
        let tool: Run | undefined;
        if (format === "dir") tool = undefined;
        else if (format === "erofs") {
          tool = timed("mkfs.erofs", ["--quiet", "-zlz4hc", img, rootfs], { reads: [rootfs] });
          const same = path("theirs-level.erofs");
          sameLevel.erofs.runs.push(sumRuns(unpack, timed("mkfs.erofs", ["--quiet", `-zlz4hc,${EROFS_LZ4HC_LEVEL}`, same, rootfs], { reads: [rootfs] })));
          sameLevel.erofs.bytes = statSync(same).size;
          clean(same);
        }
        else if (format === "squashfs") {
          tool = timed("mksquashfs", [rootfs, img, "-comp", "zstd", "-quiet", "-no-progress", "-noappend", "-no-exports"], { reads: [rootfs] });
          const same = path("theirs-level.squashfs");
          const level = ["-comp", "zstd", "-Xcompression-level", String(SQUASHFS_ZSTD_LEVEL)];
          sameLevel.squashfs.runs.push(sumRuns(unpack, timed("mksquashfs", [rootfs, same, ...level, "-quiet", "-no-progress", "-noappend", "-no-exports"], { reads: [rootfs] })));
          sameLevel.squashfs.bytes = statSync(same).size;
          clean(same);
        }
        else if (format === "ext4") tool = timed("mke2fs", ["-q", "-F", "-t", "ext4", "-d", rootfs, img, `${Math.ceil((ext4Bytes as number) / 1024)}k`], { reads: [rootfs] });
        else tool = timed("sh", ["-c", `find . -depth -print0 | cpio --null -o -H newc --quiet > ${img}`], { reads: [rootfs], cwd: rootfs });
        // dir: umoci unpack's own rootfs is their output.
        theirs[format]?.push(tool ? sumRuns(unpack, tool) : unpack);
        if (!oursFirst) runOurs();
        sizes[format] = format === "dir" ? { ours: diskBytes(out), theirs: diskBytes(rootfs) } : { ours: statSync(out).size, theirs: statSync(img).size };
        clean(out, img, bundle, env.A3S_CACHE_DIR);
      }

      // dir on the new ext4, everything of both sides on it.
      {
        const env = freshCache(onNewFs);
        const out = onNewFs("ours.dir");
        const bundle = onNewFs("umoci");
        const runOurs = (): number => newFsOurs.push(timed(process.execPath, [CLI, "build", `oci:${layout}:v2`, "-o", `dir:${out}`, "--no-cache"], { reads: [layout, env.A3S_CACHE_DIR as string], env }));
        if (i % 2 === 0) runOurs();
        newFsTheirs.push(timed("umoci", ["unpack", "--image", `${layout}:v2`, bundle], { reads: [layout] }));
        if (i % 2 === 1) runOurs();
      }

      // Registry pull → erofs.
      const env = freshCache();
      const out = path("pull.erofs");
      const pullOursOnce = (): number => pullOurs.push(timed(process.execPath, [CLI, "build", `docker://${ref}`, "-o", `erofs:${out}`, "--no-cache"], { reads: [registry.storage, env.A3S_CACHE_DIR as string], env }));
      if (i % 2 === 0) pullOursOnce();
      const l2 = path("layout");
      const copy = timed("skopeo", ["copy", "--quiet", "--src-tls-verify=false", `docker://${ref}`, `oci:${l2}:v2`], { reads: [registry.storage] });
      const bundle = path("umoci");
      const unpack = unpackOnHost(l2, bundle);
      const img = path("pull-theirs.erofs");
      const mkfs = timed("mkfs.erofs", ["--quiet", `-zlz4hc,${EROFS_LZ4HC_LEVEL}`, img, join(bundle, "rootfs")], { reads: [join(bundle, "rootfs")] });
      pullTheirs.push(sumRuns(copy, unpack, mkfs));
      if (i % 2 === 1) pullOursOnce();
      clean(out, l2, bundle, img, env.A3S_CACHE_DIR);

      // The warm rebuild: the build cache on, the same command twice (the
      // second finds its own output at OUT, checks its bytes and keeps it),
      // then once more to a new OUT (the cached image is copied there).
      const cacheEnv = freshCache();
      const a = path("cold.erofs");
      const sha = (...files: string[]): string[] => execFileSync("sha256sum", files, { encoding: "utf8" }).trim().split("\n").map((l) => l.split(" ")[0] as string);
      cold.push(timed(process.execPath, [CLI, "build", `oci:${layout}:v2`, "-o", `erofs:${a}`], { reads: [layout, cacheEnv.A3S_CACHE_DIR as string], env: cacheEnv }));
      const [coldHash] = sha(a);
      warm.push(timed(process.execPath, [CLI, "build", `oci:${layout}:v2`, "-o", `erofs:${a}`], { reads: "keep the page cache", env: cacheEnv }));
      const b = path("warm.erofs");
      warmNewPath.push(timed(process.execPath, [CLI, "build", `oci:${layout}:v2`, "-o", `erofs:${b}`], { reads: "keep the page cache", env: cacheEnv }));
      const [ha, hb] = sha(a, b);
      if (ha !== coldHash || hb !== coldHash) throw new Error(`a warm rebuild's erofs differs from the cold one: ${coldHash} vs ${ha} (same OUT), ${hb} (new OUT)`);
      clean(a, b, cacheEnv.A3S_CACHE_DIR);
    }
    const loadAfter = loadavg();
    for (const p of leftovers) rmSync(p, { recursive: true, force: true });
    const ratio = (theirsMs: number, oursMs: number): number => Math.round((theirsMs / oursMs) * 100) / 100;
    /** The CPU time of both sides (medians) and how many times less ours used. */
    const cpu = (oursRuns: readonly Run[], theirsRuns: readonly Run[]): { oursMs: number; theirsMs: number; ratio: number } => ({
      oursMs: medCpu(oursRuns),
      theirsMs: medCpu(theirsRuns),
      ratio: ratio(medCpu(theirsRuns), medCpu(oursRuns)),
    });
    const rows = formats.map((f) => ({
      format: f,
      oursMs: med(ours[f] ?? []),
      theirsMs: med(theirs[f] ?? []),
      speedup: ratio(med(theirs[f] ?? []), med(ours[f] ?? [])),
      oursRuns: (ours[f] ?? []).map((r) => Math.round(r.ms)),
      theirsRuns: (theirs[f] ?? []).map((r) => Math.round(r.ms)),
      cpu: cpu(ours[f] ?? [], theirs[f] ?? []),
      bytes: sizes[f],
    }));
    const json = {
      machine: machineLine(),
      command: "node dist/bench/oci-images.js",
      runs: RUNS,
      loadAverage: {
        before: loadBefore.map((x) => Math.round(x * 100) / 100),
        after: loadAfter.map((x) => Math.round(x * 100) / 100),
        highestOneMinute: Math.round(Math.max(...loadSamples) * 100) / 100,
        lowestOneMinute: Math.round(Math.min(...loadSamples) * 100) / 100,
        samples: loadSamples.length,
      },
      tools: {
        ours: { erofs: erofsTool.version, squashfs: squashfsTool.version },
        theirs: `the host's: mkfs.erofs (erofs-utils ${debianVersion("erofs-utils")}), mksquashfs (squashfs-tools ${debianVersion("squashfs-tools")}), mke2fs (e2fsprogs ${debianVersion("e2fsprogs")}), GNU cpio`,
      },
      umociUnpackMs: med(theirsUnpack),
      images: rows,
      likeForLike: (["erofs", "squashfs"] as const).map((f) => ({
        format: f,
        level: f === "erofs" ? `lz4hc ${EROFS_LZ4HC_LEVEL}` : `zstd ${SQUASHFS_ZSTD_LEVEL}`,
        oursMs: med(ours[f] ?? []),
        theirsMs: med(sameLevel[f].runs),
        speedup: ratio(med(sameLevel[f].runs), med(ours[f] ?? [])),
        oursRuns: (ours[f] ?? []).map((r) => Math.round(r.ms)),
        theirsRuns: sameLevel[f].runs.map((r) => Math.round(r.ms)),
        cpu: cpu(ours[f] ?? [], sameLevel[f].runs),
        bytes: { ours: sizes[f]?.ours ?? 0, theirs: sameLevel[f].bytes },
      })),
      dirOnNewExt4: { oursMs: med(newFsOurs), theirsMs: med(newFsTheirs), speedup: ratio(med(newFsTheirs), med(newFsOurs)), oursRuns: newFsOurs.map((r) => Math.round(r.ms)), theirsRuns: newFsTheirs.map((r) => Math.round(r.ms)), cpu: cpu(newFsOurs, newFsTheirs) },
      registryPullErofs: { oursMs: med(pullOurs), theirsMs: med(pullTheirs), speedup: ratio(med(pullTheirs), med(pullOurs)), oursRuns: pullOurs.map((r) => Math.round(r.ms)), theirsRuns: pullTheirs.map((r) => Math.round(r.ms)), cpu: cpu(pullOurs, pullTheirs) },
      warmRebuild: { coldMs: med(cold), warmMs: med(warm), percentOfCold: Math.round((1000 * med(warm)) / med(cold)) / 10, coldRuns: cold.map((r) => Math.round(r.ms)), warmRuns: warm.map((r) => Math.round(r.ms)), newOutMs: med(warmNewPath), newOutPercentOfCold: Math.round((1000 * med(warmNewPath)) / med(cold)) / 10, newOutRuns: warmNewPath.map((r) => Math.round(r.ms)) },
    };
    const mib = (b: number | undefined): string => `${((b ?? 0) / 2 ** 20).toFixed(1)} MiB`;
    const cpuCell = (c: { oursMs: number; theirsMs: number; ratio: number }): string => `${c.oursMs} / ${c.theirsMs} ms (${c.ratio}×)`;
    const md = [
      "# OCI image → directory or bootable image, side by side with umoci (+ the mkfs tool)",
      "",
      `${json.machine}; 2 cores. Load while this ran (the machine may be shared): 1/5/15-minute load average ${json.loadAverage.before.join(" / ")} before, ${json.loadAverage.after.join(" / ")} after; the 1-minute load, sampled before each of the ${json.loadAverage.samples} timed commands, was ${json.loadAverage.lowestOneMinute} at its lowest and ${json.loadAverage.highestOneMinute} at its highest. Median of ${RUNS} runs; every pair ran back to back in the same iteration, ours first in even runs and theirs first in odd ones; wall time of whole commands; before each, untimed: \`sync\`, the page cache dropped and the command's inputs and both sides' programs read back in, then 3 s idle (the warm rebuilds excepted: they run on what the cold build left; bench/page-cache.ts says why), and their CPU time (user + system, children included: GNU time), which a busy host inflates less (though on this VM the system time also carries the host's cost of giving back memory it had taken); nothing was deleted until the last command, and the first ran a minute after the set-up (ext4 without a journal slows file creation for a minute after a large delete: settleFilesystem() in bench/stats.ts); \`umoci unpack\` deletes what the second layer whites out, so each unpack on the host's file system and each of our dir builds there started at least ${SETTLE_MS / 1000} s after the last unpack there (DeletionClock in bench/stats.ts). Absolute times vary with the load; read the ratios.`,
      "",
      `Image: Debian bookworm minbase (mmdebstrap) + a second umoci layer (whiteouts, additions), oci layout tag v2. Our tools: ${erofsTool.version}, ${squashfsTool.version} (Debian 13, provisioned into the cache); ext4 written by a3s-rootfs itself, checked with the host's e2fsck. Theirs: ${json.tools.theirs}. umoci unpack alone: ${json.umociUnpackMs} ms (median).`,
      "",
      "| output | ours (`a3s-rootfs build oci:L:v2 -o F:OUT --no-cache`, empty layer store) | theirs (`umoci unpack` + tool) | speed-up | runs ours / theirs (ms) | CPU time ours / theirs (median) | size ours / theirs |",
      "|---|---:|---:|---:|---|---|---|",
      ...rows.map(
        (r) =>
          `| ${r.format === "dir" ? "dir (theirs: `umoci unpack` alone; sizes: `du -sb`)" : r.format === "squashfs" ? `squashfs (ours zstd level ${SQUASHFS_ZSTD_LEVEL}; theirs \`-comp zstd\`, mksquashfs's level 15, as a user types it)` : r.format === "erofs" ? `erofs (ours lz4hc level ${EROFS_LZ4HC_LEVEL}; theirs \`-zlz4hc\`, lz4hc's level 9, as a user types it)` : r.format} | ${r.oursMs} ms | ${r.theirsMs} ms | ${r.speedup}× | ${r.oursRuns.join(", ")} / ${r.theirsRuns.join(", ")} | ${cpuCell(r.cpu)} | ${mib(r.bytes?.ours)} / ${mib(r.bytes?.theirs)} |`,
      ),
      ...json.likeForLike.map(
        (r) => `| ${r.format} like for like (both ${r.level}) | ${r.oursMs} ms | ${r.theirsMs} ms | ${r.speedup}× | ${r.oursRuns.join(", ")} / ${r.theirsRuns.join(", ")} | ${cpuCell(r.cpu)} | ${mib(r.bytes.ours)} / ${mib(r.bytes.theirs)} |`,
      ),
      `| dir on a new ext4 (mkfs.ext4's defaults, journalled, loop-mounted; both sides' files on it) | ${json.dirOnNewExt4.oursMs} ms | ${json.dirOnNewExt4.theirsMs} ms (\`umoci unpack\`) | ${json.dirOnNewExt4.speedup}× | ${json.dirOnNewExt4.oursRuns.join(", ")} / ${json.dirOnNewExt4.theirsRuns.join(", ")} | ${cpuCell(json.dirOnNewExt4.cpu)} | |`,
      `| registry pull → erofs | ${json.registryPullErofs.oursMs} ms | ${json.registryPullErofs.theirsMs} ms (skopeo copy + umoci unpack + mkfs.erofs at lz4hc level ${EROFS_LZ4HC_LEVEL}) | ${json.registryPullErofs.speedup}× | ${json.registryPullErofs.oursRuns.join(", ")} / ${json.registryPullErofs.theirsRuns.join(", ")} | ${cpuCell(json.registryPullErofs.cpu)} | |`,
      "",
      `Warm rebuild (build cache on; the same \`build oci:L:v2 -o erofs:OUT\` twice, the second finding its own output at OUT): cold ${json.warmRebuild.coldMs} ms, warm ${json.warmRebuild.warmMs} ms = **${json.warmRebuild.percentOfCold} %** of cold (target ≤ 10 %). Runs: cold ${json.warmRebuild.coldRuns.join(", ")}; warm ${json.warmRebuild.warmRuns.join(", ")}.`,
      `The same build once more to a new OUT (the cached image copied there, read and hashed in one pass): ${json.warmRebuild.newOutMs} ms = ${json.warmRebuild.newOutPercentOfCold} % of cold. Runs: ${json.warmRebuild.newOutRuns.join(", ")}.`,
      "",
      `Tool commands on their side: \`mkfs.erofs --quiet -zlz4hc IMG DIR\` (and again with \`-zlz4hc,${EROFS_LZ4HC_LEVEL}\`, as in the registry pull), \`mksquashfs DIR IMG -comp zstd -noappend -no-exports\` (and again with \`-Xcompression-level ${SQUASHFS_ZSTD_LEVEL}\`), \`mke2fs -q -F -t ext4 -d DIR IMG SIZE\` (SIZE = our image's), \`find . -depth -print0 | cpio --null -o -H newc\`.`,
      "",
      `Command: \`${json.command}\` (as root; BENCH_RUNS=${RUNS}).`,
    ].join("\n");
    writeResults("oci-images", json, md);
    process.stdout.write(md + "\n");
  } finally {
    await registry.stop();
    newFs?.unmount();
    rmSync(work, { recursive: true, force: true });
  }
}

interface NewExt4 {
  readonly mountpoint: string;
  readonly unmount: () => void;
}

/** A new ext4 of mkfs.ext4's defaults (a journal), in a sparse file under `work`, loop-mounted there. */
function mountNewExt4(work: string): NewExt4 {
  const image = join(work, "new-ext4.img");
  const mountpoint = join(work, "new-ext4");
  execFileSync("truncate", ["-s", "16G", image]);
  execFileSync("mkfs.ext4", ["-q", "-F", image]);
  mkdirSync(mountpoint);
  execFileSync("mount", ["-o", "loop", image, mountpoint]);
  return {
    mountpoint,
    unmount: () => {
      execFileSync("umount", [mountpoint]);
    },
  };
}

await main();
