import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Builds an image in an OCI layout with umoci, the way people do by hand:
 * each step unpacks the image, changes its rootfs on disk, and repacks it as
 * one new layer (deletions become whiteouts, a replaced directory an opaque
 * one). Needs root, as umoci unpack keeps owners and devices.
 */
export function umociImage(
  layout: string,
  tag: string,
  steps: readonly ((rootfs: string) => void)[],
  config: { entrypoint?: string[]; cmd?: string[]; user?: string; workingDir?: string; env?: string[] } = {},
): void {
  if (!existsSync(join(layout, "index.json"))) umoci(["init", "--layout", layout]);
  umoci(["new", "--image", `${layout}:${tag}`]);
  for (const step of steps) {
    const work = mkdtempSync(join(tmpdir(), "a3s-umoci-"));
    const bundle = join(work, "bundle");
    try {
      umoci(["unpack", "--image", `${layout}:${tag}`, bundle]);
      step(join(bundle, "rootfs"));
      umoci(["repack", "--image", `${layout}:${tag}`, bundle]);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
  const args = ["config", "--image", `${layout}:${tag}`];
  for (const e of config.entrypoint ?? []) args.push("--config.entrypoint", e);
  for (const c of config.cmd ?? []) args.push("--config.cmd", c);
  for (const e of config.env ?? []) args.push("--config.env", e);
  if (config.user) args.push("--config.user", config.user);
  if (config.workingDir) args.push("--config.workingdir", config.workingDir);
  if (args.length > 3) umoci(args);
  umoci(["gc", "--layout", layout]);
}

/** `umoci unpack` into a fresh bundle; returns the bundle's rootfs path. */
export function umociUnpack(layout: string, tag: string, bundle: string): string {
  umoci(["unpack", "--image", `${layout}:${tag}`, bundle]);
  return join(bundle, "rootfs");
}

function umoci(args: string[]): void {
  execFileSync("umoci", args, { stdio: ["ignore", "ignore", "pipe"], maxBuffer: 1 << 26 });
}
