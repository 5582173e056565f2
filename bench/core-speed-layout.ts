// The OCI image layout the core-speed benchmark applies: a Debian bookworm
// minbase (bench/minbase.ts, mmdebstrap) made by umoci into two layers, the
// second deleting /usr/share/{doc,man,locale} (whiteouts), replacing
// /etc/apt/apt.conf.d (an opaque directory) and adding files: the v2 image
// of bench/oci-layout.ts (both from bench/two-layer-image.ts), without its 1.1 GB memory layer. Built once into
// its own directory (so it never races the other benchmarks' layout) under
// a flock, and rebuilt when the minbase changes.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { minbaseTar } from "./minbase.js";
import { sh, umociTwoLayerImage } from "./two-layer-image.js";

export const CORE_LAYOUT_DIR = "/tmp/a3s-bench-core-layout";
export const CORE_LAYOUT_TAG = "v2";

/** The layout's path (`oci:PATH:v2` names the image); built on first use. */
export function coreBenchLayout(): string {
  const stamp = String(statSync(minbaseTar()).mtimeMs);
  const layout = join(CORE_LAYOUT_DIR, "layout");
  const stampFile = join(CORE_LAYOUT_DIR, "minbase.stamp");
  if (existsSync(stampFile) && readFileSync(stampFile, "utf8") === stamp) return layout;
  mkdirSync(CORE_LAYOUT_DIR, { recursive: true });
  // One builder at a time; a second waits and then finds the stamp.
  execFileSync("flock", [`${CORE_LAYOUT_DIR}.lock`, process.execPath, "-e", `import(${JSON.stringify(import.meta.url)}).then((m) => m.buildLayoutLocked(${JSON.stringify(stamp)}))`], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  return layout;
}

/** Builds the layout (called under the flock); does nothing when another builder finished it meanwhile. */
export function buildLayoutLocked(stamp: string): void {
  const layout = join(CORE_LAYOUT_DIR, "layout");
  const stampFile = join(CORE_LAYOUT_DIR, "minbase.stamp");
  if (existsSync(stampFile) && readFileSync(stampFile, "utf8") === stamp) return;
  for (const old of ["layout", "b1", "b2"]) rmSync(join(CORE_LAYOUT_DIR, old), { recursive: true, force: true });
  const bundle = (name: string): string => join(CORE_LAYOUT_DIR, name);
  umociTwoLayerImage(layout, CORE_LAYOUT_DIR);
  sh("umoci", ["gc", "--layout", layout]);
  for (const b of ["b1", "b2"]) rmSync(bundle(b), { recursive: true, force: true });
  writeFileSync(stampFile, stamp);
}
