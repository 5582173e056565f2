// Benchmark: an OCI image layout applied to a directory, side by side with
// `umoci unpack` on the same layout; then straight to cpio and erofs against
// umoci unpack followed by GNU cpio / mkfs.erofs; then peak memory on an
// image of more than 1 GB.
//
// The image: a Debian bookworm minbase from mmdebstrap (made once, cached in
// /tmp/a3s-bench-minbase, shared with the registry benchmark under the same
// flock), made by umoci into two layers: the minbase, then a layer that
// deletes /usr/share/{doc,man,locale} (whiteouts), replaces /etc/apt/apt.conf.d
// (an opaque directory) and adds files. Our tree (before the A3S layer) is
// compared with umoci's rootfs: paths, kinds, modes, uid/gid, link targets,
// device numbers and file content.
//
// Run as root (umoci and our dir output then apply ownership exactly):
//   npx tsc -p . && node dist/bench/oci-layout.js
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { ContentStore } from "../src/oci/store/content-store.js";
import { ociLayoutSource } from "../src/sources/oci-layout-source.js";
import { observeDirectory } from "../test/helpers/extracted-tree.js";
import { imageDifferences } from "../test/helpers/image-compare.js";
import { expectedView, type ObservedEntry } from "../test/helpers/image-sample.js";
import { minbaseTar } from "./minbase.js";
import { INSTALLED_CLI as CLI } from "./installed-cli.js";
import { sh, umociTwoLayerImage } from "./two-layer-image.js";
import { machineLine, median, writeResults } from "./stats.js";

const RUNS = 5;
const LAYOUT_CACHE = "/tmp/a3s-bench-oci-layout";
const TIME = "/usr/bin/time";
/** Size of the extra layer of the large image, in incompressible files. */
const BIG_BYTES = 1100 * 1024 * 1024;
const BIG_FILE = 4 * 1024 * 1024;

/**
 * The layout: tag v2 is minbase + a whiteout layer; tag big adds a third
 * layer of incompressible files (over 1 GB in all). Rebuilt when the
 * minbase changes.
 */
function benchLayout(): string {
  const stamp = String(statSync(minbaseTar()).mtimeMs);
  const layout = join(LAYOUT_CACHE, "layout");
  const stampFile = join(LAYOUT_CACHE, "minbase.stamp");
  if (existsSync(stampFile) && readFileSync(stampFile, "utf8") === stamp) return layout;
  rmSync(LAYOUT_CACHE, { recursive: true, force: true });
  mkdirSync(LAYOUT_CACHE, { recursive: true });
  const bundle = (name: string): string => join(LAYOUT_CACHE, name);
  umociTwoLayerImage(layout, LAYOUT_CACHE);

  process.stderr.write("bench: adding a 1.1 GB layer for the memory run (once)\n");
  sh("umoci", ["unpack", "--image", `${layout}:v2`, bundle("b3")]);
  const data = join(bundle("b3"), "rootfs/opt/data");
  mkdirSync(data, { recursive: true });
  for (let i = 0; i < BIG_BYTES / BIG_FILE; i++) writeFileSync(join(data, `blob-${String(i).padStart(4, "0")}`), randomBytes(BIG_FILE));
  sh("umoci", ["repack", "--image", `${layout}:big`, bundle("b3")]);
  sh("umoci", ["config", "--image", `${layout}:big`, "--config.entrypoint", "/bin/bash"]);
  sh("umoci", ["gc", "--layout", layout]);
  for (const b of ["b1", "b2", "b3"]) rmSync(bundle(b), { recursive: true, force: true });
  writeFileSync(stampFile, stamp);
  return layout;
}

interface Run {
  ms: number;
  rssMiB: number;
}

/** Runs a command under /usr/bin/time; wall milliseconds and peak RSS. */
function timed(file: string, args: string[], env: NodeJS.ProcessEnv = process.env, cwd?: string): Run {
  // Every command starts with no dirty pages of the one before to write back,
  // or the next one in line pays for its predecessor's writes.
  execFileSync("sync");
  const t = performance.now();
  const r = spawnSync(TIME, ["-f", "A3S_RSS_KB=%M", file, ...args], { encoding: "utf8", env, cwd, stdio: ["ignore", "ignore", "pipe"], maxBuffer: 1 << 26 });
  const ms = performance.now() - t;
  if (r.status !== 0) throw new Error(`${file} ${args.join(" ")} failed: ${r.stderr}`);
  return { ms, rssMiB: Number(/A3S_RSS_KB=(\d+)/.exec(r.stderr)?.[1] ?? NaN) / 1024 };
}

function sumRuns(...parts: Run[]): Run {
  return { ms: parts.reduce((n, p) => n + p.ms, 0), rssMiB: Math.max(...parts.map((p) => p.rssMiB)) };
}

function summary(runs: Run[]): { medianMs: number; runsMs: number[]; peakRssMiB: number } {
  return { medianMs: Math.round(median(runs.map((r) => r.ms))), runsMs: runs.map((r) => Math.round(r.ms)), peakRssMiB: Math.round(Math.max(...runs.map((r) => r.rssMiB))) };
}

/** Our tree (no A3S layer) against umoci's rootfs; mtimes of directories are left out (umoci sets them as it extracts). */
async function compareWithUmoci(layout: string, tag: string, umociRootfs: string, store: ContentStore): Promise<{ entries: number; differences: string[] }> {
  const result = await ociLayoutSource(`${layout}:${tag}`, { store, records: false }).load({ epoch: 0, warn: () => {}, progress: () => {} });
  const want = await expectedView(result.tree);
  const got = observeDirectory(umociRootfs, { xattrs: true });
  const dropDirMtime = (m: Map<string, ObservedEntry>): Map<string, ObservedEntry> =>
    new Map([...m].map(([p, o]) => [p, o.kind === "directory" ? { ...o, mtime: 0 } : o]));
  return { entries: want.size, differences: imageDifferences(dropDirMtime(got), dropDirMtime(want)) };
}

function layerSizes(layout: string, tag: string): { compressed: number; layers: number } {
  const index = JSON.parse(readFileSync(join(layout, "index.json"), "utf8")) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
  const entry = index.manifests.find((m) => m.annotations?.["org.opencontainers.image.ref.name"] === tag);
  if (!entry) throw new Error(`no tag ${tag}`);
  const manifest = JSON.parse(readFileSync(join(layout, "blobs/sha256", entry.digest.slice(7)), "utf8")) as { layers: { size: number }[] };
  return { compressed: manifest.layers.reduce((n, l) => n + l.size, 0), layers: manifest.layers.length };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("run as root: umoci unpack and our dir output apply ownership exactly only as root");
  const layout = benchLayout();
  const loadBefore = loadavg()[0] as number;
  const work = mkdtempSync(join(tmpdir(), "a3s-bench-oci-"));
  try {
    const spec = `oci:${layout}:v2`;
    const ours: Run[] = [];
    const oursHit: Run[] = [];
    const umoci: Run[] = [];
    const oursCpio: Run[] = [];
    const umociCpio: Run[] = [];
    const oursErofs: Run[] = [];
    const umociErofs: Run[] = [];
    let n = 0;
    const out = (name: string): string => join(work, `${name}-${n++}`);
    const clean = (...paths: string[]): void => {
      for (const p of paths) rmSync(p, { recursive: true, force: true });
    };
    for (let i = 0; i < RUNS; i++) {
      const cache = out("cache");
      const env = { ...process.env, A3S_CACHE_DIR: cache };
      let a = out("ours");
      ours.push(timed(process.execPath, [CLI, "build", spec, "-o", `dir:${a}`], env));
      let b = out("ours");
      oursHit.push(timed(process.execPath, [CLI, "build", spec, "-o", `dir:${b}`], env));
      let c = out("umoci");
      umoci.push(timed("umoci", ["unpack", "--image", `${layout}:v2`, c]));
      clean(a, b, c);

      // Straight to an image, cold cache, against unpack-then-pack.
      const cpioCache = { ...process.env, A3S_CACHE_DIR: out("cache") };
      a = out("ours.cpio");
      oursCpio.push(timed(process.execPath, [CLI, "build", spec, "-o", `cpio:${a}`], cpioCache));
      c = out("umoci");
      const cpioFile = out("umoci.cpio");
      const unpack = timed("umoci", ["unpack", "--image", `${layout}:v2`, c]);
      const pack = timed("sh", ["-c", `find . -depth -print0 | cpio --null -o -H newc --quiet > ${cpioFile}`], process.env, join(c, "rootfs"));
      umociCpio.push(sumRuns(unpack, pack));
      clean(a, cpioFile);
      const erofsCache = { ...process.env, A3S_CACHE_DIR: out("cache") };
      a = out("ours.erofs");
      oursErofs.push(timed(process.execPath, [CLI, "build", spec, "-o", `erofs:${a}`], erofsCache));
      const erofsFile = out("umoci.erofs");
      const unpack2 = timed("umoci", ["unpack", "--image", `${layout}:v2`, (b = out("umoci"))]);
      // The same compression our erofs output uses by default.
      const mkfs = timed("mkfs.erofs", ["--quiet", "-zlz4hc", erofsFile, join(b, "rootfs")]);
      umociErofs.push(sumRuns(unpack2, mkfs));
      clean(a, b, c, erofsFile, cache, cpioCache.A3S_CACHE_DIR, erofsCache.A3S_CACHE_DIR);
    }

    // Fidelity: our tree against umoci's unpack of the same tag.
    const umociDir = out("umoci");
    execFileSync("umoci", ["unpack", "--image", `${layout}:v2`, umociDir]);
    const store = new ContentStore(join(out("cache"), "blobs"));
    const equality = await compareWithUmoci(layout, "v2", join(umociDir, "rootfs"), store);
    clean(umociDir);

    // Peak memory applying the large image (one run each: it is the memory that matters here).
    const bigCache = { ...process.env, A3S_CACHE_DIR: out("cache") };
    const bigOurs = timed(process.execPath, [CLI, "build", `oci:${layout}:big`, "-o", `dir:${out("big-ours")}`], bigCache);
    const bigUmoci = timed("umoci", ["unpack", "--image", `${layout}:big`, out("big-umoci")]);

    const image = layerSizes(layout, "v2");
    const big = layerSizes(layout, "big");
    const s = {
      ours: summary(ours),
      oursCacheHit: summary(oursHit),
      umociUnpack: summary(umoci),
      oursCpio: summary(oursCpio),
      umociUnpackThenCpio: summary(umociCpio),
      oursErofs: summary(oursErofs),
      umociUnpackThenMkfsErofs: summary(umociErofs),
    };
    const ratio = (a: number, b: number): number => Math.round((a / b) * 100) / 100;
    const load = { before: Math.round(loadBefore * 100) / 100, after: Math.round((loadavg()[0] as number) * 100) / 100 };
    const json = {
      machine: machineLine(),
      loadAverage1m: load,
      runs: RUNS,
      image: { tag: "v2", layers: image.layers, compressedBytes: image.compressed, entries: equality.entries },
      results: s,
      speedup: {
        dirVsUmociUnpack: ratio(s.umociUnpack.medianMs, s.ours.medianMs),
        cacheHitVsUmociUnpack: ratio(s.umociUnpack.medianMs, s.oursCacheHit.medianMs),
        cpioVsUnpackThenCpio: ratio(s.umociUnpackThenCpio.medianMs, s.oursCpio.medianMs),
        erofsVsUnpackThenMkfs: ratio(s.umociUnpackThenMkfsErofs.medianMs, s.oursErofs.medianMs),
      },
      equalToUmoci: { equal: equality.differences.length === 0, differences: equality.differences.slice(0, 50) },
      largeImage: {
        layers: big.layers,
        compressedBytes: big.compressed,
        ours: { ms: Math.round(bigOurs.ms), peakRssMiB: Math.round(bigOurs.rssMiB) },
        umociUnpack: { ms: Math.round(bigUmoci.ms), peakRssMiB: Math.round(bigUmoci.rssMiB) },
      },
    };
    const row = (name: string, r: ReturnType<typeof summary>): string => `| ${name} | ${r.medianMs} | ${r.runsMs.join(", ")} | ${r.peakRssMiB} |`;
    const md = [
      "# OCI layout → rootfs, side by side with umoci",
      "",
      `${machineLine()}, 2 cores; median of ${RUNS} runs; wall time of the whole command (\`sync\` before each, untimed); peak RSS from /usr/bin/time. Timings on this VM's disk vary by up to 2× between runs; the ratios are from the same run. 1-minute load average ${load.before} before, ${load.after} after (other work on the machine slows both sides).`,
      "",
      `Image: Debian bookworm minbase (mmdebstrap) made by umoci into ${image.layers} layers (the second deletes /usr/share/{doc,man,locale} with whiteouts and replaces /etc/apt/apt.conf.d with an opaque directory), ${(image.compressed / 1e6).toFixed(1)} MB compressed, ${equality.entries} entries.`,
      "",
      "| command | median ms | runs ms | peak RSS MiB |",
      "|---|---:|---|---:|",
      row("`a3s-rootfs build oci:L:v2 -o dir:OUT` (empty cache)", s.ours),
      row("same, cache hit (layers already uncompressed in the store)", s.oursCacheHit),
      row("`umoci unpack --image L:v2 OUT`", s.umociUnpack),
      row("`a3s-rootfs build oci:L:v2 -o cpio:OUT` (empty cache)", s.oursCpio),
      row("`umoci unpack` + `find | cpio -o -H newc`", s.umociUnpackThenCpio),
      row("`a3s-rootfs build oci:L:v2 -o erofs:OUT` (empty cache)", s.oursErofs),
      row("`umoci unpack` + `mkfs.erofs -zlz4hc`", s.umociUnpackThenMkfsErofs),
      "",
      `Speed-up (umoci ÷ ours): dir ${json.speedup.dirVsUmociUnpack}× (target ≥ 2×), cache hit ${json.speedup.cacheHitVsUmociUnpack}×, cpio ${json.speedup.cpioVsUnpackThenCpio}×, erofs ${json.speedup.erofsVsUnpackThenMkfs}×.`,
      "",
      `Our tree equals umoci's rootfs (paths, kinds, modes, uid/gid, link targets, devices, content, xattrs, hardlinks; directory mtimes left out): **${json.equalToUmoci.equal ? "yes" : "no"}**${json.equalToUmoci.equal ? "" : "\n\n```\n" + json.equalToUmoci.differences.join("\n") + "\n```"}`,
      "",
      `Large image (${big.layers} layers, ${(big.compressed / 1e9).toFixed(2)} GB compressed, a 1.1 GB layer of incompressible files), one run: ours ${json.largeImage.ours.ms} ms, peak RSS ${json.largeImage.ours.peakRssMiB} MiB (target ≤ 300 MB); umoci unpack ${json.largeImage.umociUnpack.ms} ms, ${json.largeImage.umociUnpack.peakRssMiB} MiB.`,
    ].join("\n");
    writeResults("oci-layout", json, md);
    process.stdout.write(md + "\n");
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
