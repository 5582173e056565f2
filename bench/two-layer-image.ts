// The two-layer image the core-speed and oci-layout benchmarks apply: a
// Debian bookworm minbase (bench/minbase.ts, mmdebstrap) made by umoci into
// two layers, the second deleting /usr/share/{doc,man,locale} (whiteouts),
// replacing /etc/apt/apt.conf.d (an opaque directory) and adding files.
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MINBASE_TAR } from "./minbase.js";

export function sh(file: string, args: string[], opts: { cwd?: string } = {}): void {
  execFileSync(file, args, { stdio: ["ignore", "ignore", "inherit"], ...opts });
}

/**
 * Makes tag v2 (entrypoint /bin/bash) in a new layout at `layout`, with
 * umoci's bundles `b1` and `b2` under `workDir`; leaves the bundles for the
 * caller to remove or reuse and does not gc the layout.
 */
export function umociTwoLayerImage(layout: string, workDir: string): void {
  const bundle = (name: string): string => join(workDir, name);
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
}
