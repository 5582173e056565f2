import { posix } from "node:path";
import { INIT_MOUNTS } from "../layout/index.js";
import { normaliseRootfsPath, type RootfsTree } from "../tree/index.js";
import { safeResolve } from "./tree-files.js";

/** A mount that covers a path at boot. */
export interface MountShadow {
  /** The mount point. */
  readonly mount: string;
  /** What is mounted there ("proc", "a tmpfs", "the host share workspace"...). */
  readonly what: string;
  /** The path under it: the one asked about, or where its symlinks lead in the image. */
  readonly at: string;
}

/**
 * Whether a path of the image is covered at boot by something the guest
 * init mounts: the fixed mounts (/dev, /proc, /sys, the tmpfs directories)
 * and the config's shares. The path is checked as written and where it
 * leads through the image's symlinks, since the kernel follows them too:
 * an agent at /opt/agent with /opt -> /tmp is just as hidden, and exec
 * finds whatever the mount holds there instead (for a share, a file the
 * host, or the agent itself, can write).
 */
export function mountShadow(tree: RootfsTree, path: string, shares: readonly { path: string; tag?: string }[]): MountShadow | undefined {
  const mounts = [...INIT_MOUNTS, ...shares.map((s) => ({ path: normaliseRootfsPath(s.path), what: s.tag ? `the host share ${s.tag}` : "a host share" }))];
  const places = new Set<string>();
  const asWritten = normaliseRootfsPath(path);
  places.add(asWritten);
  const parent = safeResolve(tree, posix.dirname(asWritten));
  if (parent) places.add(posix.join(parent.path, posix.basename(asWritten)));
  const whole = safeResolve(tree, asWritten);
  if (whole) places.add(whole.path);
  for (const at of places) {
    for (const m of mounts) {
      if (m.path !== "/" && (at === m.path || at.startsWith(m.path + "/"))) return { mount: m.path, what: m.what, at };
    }
  }
  return undefined;
}
