// The two-layer OCI image the registry and image benchmarks share: layer 1
// the Debian bookworm minbase (bench/minbase.ts), layer 2 made by umoci,
// deleting /usr/share/{doc,man,locale} (whiteouts) and adding files; tag v2,
// entrypoint /bin/bash. Made once, rebuilt when the minbase changes.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MINBASE_TAR, minbaseTar } from "./minbase.js";

export const MINBASE_LAYOUT_CACHE = "/tmp/a3s-bench-registry-layout";

function sh(file: string, args: string[]): void {
  execFileSync(file, args, { stdio: ["ignore", "ignore", "inherit"] });
}

/** The layout directory (tag v2), made under `cacheDir` if it is not there yet. */
export function minbaseLayout(cacheDir: string = MINBASE_LAYOUT_CACHE): string {
  const stamp = String(statSync(minbaseTar()).mtimeMs);
  const layout = join(cacheDir, "layout");
  const stampFile = join(cacheDir, "minbase.stamp");
  if (existsSync(stampFile) && readFileSync(stampFile, "utf8") === stamp) return layout;
  rmSync(cacheDir, { recursive: true, force: true });
  mkdirSync(cacheDir, { recursive: true });
  const b1 = join(cacheDir, "b1");
  const b2 = join(cacheDir, "b2");
  sh("umoci", ["init", "--layout", layout]);
  sh("umoci", ["new", "--image", `${layout}:base`]);
  sh("umoci", ["unpack", "--image", `${layout}:base`, b1]);
  sh("tar", ["--numeric-owner", "-xpf", MINBASE_TAR, "-C", join(b1, "rootfs")]);
  sh("umoci", ["repack", "--image", `${layout}:base`, b1]);
  sh("umoci", ["unpack", "--image", `${layout}:base`, b2]);
  const r2 = join(b2, "rootfs");
  for (const d of ["usr/share/doc", "usr/share/man", "usr/share/locale"]) rmSync(join(r2, d), { recursive: true, force: true });
  mkdirSync(join(r2, "opt/agent"), { recursive: true });
  writeFileSync(join(r2, "opt/agent/README"), "the second layer\n");
  writeFileSync(join(r2, "etc/motd"), "bench image layer 2\n");
  sh("umoci", ["repack", "--image", `${layout}:v2`, b2]);
  sh("umoci", ["config", "--image", `${layout}:v2`, "--config.entrypoint", "/bin/bash"]);
  sh("umoci", ["gc", "--layout", layout]);
  rmSync(b1, { recursive: true, force: true });
  rmSync(b2, { recursive: true, force: true });
  writeFileSync(stampFile, stamp);
  return layout;
}
