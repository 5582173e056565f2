// A node_modules-like tree, the input of the workspace benchmark's tar
// workload: many small files in a few levels of package directories, with
// the long tail of a few large bundles. Generated from a fixed seed, so every
// run and every machine extracts the same bytes; the shape follows what an
// npm install writes (median file ~1.5 KiB, 90th percentile ~12 KiB, 20 or so
// files a package), as measured on this project's own node_modules.
import { writeOutputs } from "../../src/index.js";
import { bytesContent, RootfsTree } from "../../src/tree/index.js";

/** mulberry32: a small, well-distributed PRNG; Math.random cannot be seeded. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A log-normal sample: exp(mu + sigma * N(0,1)), by Box–Muller. */
function logNormal(rand: () => number, median: number, sigma: number): number {
  const u = Math.max(rand(), 1e-12);
  const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
  return median * Math.exp(sigma * z);
}

const TEXT = "module.exports = function (a, b) { return a + b; }; // the quick brown fox jumps over the lazy dog\n";

export interface PackageTreeStats {
  readonly files: number;
  readonly directories: number;
  readonly bytes: number;
}

/** Writes the tree as a tar file at `path` with about `files` files; returns what it holds. */
export async function writePackageTarball(path: string, files: number, seed = 20250101): Promise<PackageTreeStats> {
  const rand = prng(seed);
  const tree = new RootfsTree({ epoch: 0 });
  const text = Buffer.from(TEXT.repeat(Math.ceil((4 << 20) / TEXT.length)));
  let made = 0;
  let bytes = 0;
  const dirs = new Set<string>();
  for (let pkg = 0; made < files; pkg++) {
    const scoped = rand() < 0.15;
    const base = `/node_modules/${scoped ? `@scope${pkg % 17}/` : ""}pkg-${pkg}`;
    const count = Math.min(files - made, Math.max(3, Math.round(logNormal(rand, 18, 0.9))));
    const subdirs = ["", "/lib", "/lib/internal", "/dist", "/types"];
    for (let i = 0; i < count; i++) {
      const name =
        i === 0 ? "package.json" : i === 1 ? "README.md" : i === 2 ? "LICENSE" : `${subdirs[Math.floor(rand() * subdirs.length)]}/m${i}.js`;
      const size = Math.min(text.length, Math.max(16, Math.round(logNormal(rand, 1500, 1.6))));
      const file = `${base}/${name}`;
      dirs.add(file.slice(0, file.lastIndexOf("/")));
      tree.addFile(file, bytesContent(text.subarray(0, size)), { mode: 0o644 });
      made++;
      bytes += size;
    }
  }
  await writeOutputs(tree, [{ format: "tar", path }], { epoch: 0, warn: () => {} });
  return { files: made, directories: dirs.size, bytes };
}
