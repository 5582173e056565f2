// The OCI image layout the core-speed benchmark applies: a Debian bookworm
// minbase (bench/minbase.ts, mmdebstrap) made by umoci into two layers, the
// second deleting /usr/share/{doc,man,locale} (whiteouts), replacing
// /etc/apt/apt.conf.d (an opaque directory) and adding files: the v2 image
// of bench/oci-layout.ts, without its 1.1 GB memory layer. Built once into
// its own directory (so it never races the other benchmarks' layout) under
// a flock, and rebuilt when the minbase changes.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MINBASE_TAR, minbaseTar } from "./minbase.js";

export const CORE_LAYOUT_DIR = "/tmp/a3s-bench-core-layout";
export const CORE_LAYOUT_TAG = "v2";

function sh(file: string, args: string[]): void {
  execFileSync(file, args, { stdio: ["ignore", "ignore", "inherit"] });
}

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
  process.stderr.write("bench: building the two-layer image with umoci (once)\n");
  sh("umoci", ["init", "--layout", layout]);
  sh("umoci", ["new", "--image", `${layout}:v2`]);
  sh("umoci", ["unpack", "--image", `${layout}:v2`, bundle("b1")]);
  sh("tar", ["--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf", MINBASE_TAR, "-C", join(bundle("b1"), "rootfs")]);
  sh("umoci", ["repack", "--image", `${layout}:v2`, bundle("b1")]);
  sh("umoci", ["unpack", "--image", `${layout}:v2`, bundle("b2")]);
  const r2 = join(bundle("b2"), "rootfs");
  for (const d of ["usr/share/doc", "usr/share/man", "usr/share/locale"]) rmSync(join(r2, d), { recursive: true, force: true });
  rmSync(join(r2, "etc/apt/apt.conf.d"), { recursive: true, force: true });
  mkdirSync(join(r2, "etc/apt/apt.conf.d"));
  writeFileSync(join(r2, "etc/apt/apt.conf.d/99bench"), 'APT::Install-Recommends "false";\n');
  mkdirSync(join(r2, "opt/agent"), { recursive: true });
  writeFileSync(join(r2, "opt/agent/README"), "the second layer\n");
  writeFileSync(join(r2, "etc/motd"), "bench image layer 2\n");
  sh("umoci", ["repack", "--image", `${layout}:v2`, bundle("b2")]);
  sh("umoci", ["config", "--image", `${layout}:v2`, "--config.entrypoint", "/bin/bash"]);
  sh("umoci", ["gc", "--layout", layout]);
  for (const b of ["b1", "b2"]) rmSync(bundle(b), { recursive: true, force: true });
  writeFileSync(stampFile, stamp);
}
