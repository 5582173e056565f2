import { homedir } from "node:os";
import { join } from "node:path";

/**
 * The user's cache directory for a3s-rootfs: $A3S_CACHE_DIR, else
 * $XDG_CACHE_HOME/a3s-rootfs, else ~/.cache/a3s-rootfs. Kernels and (later)
 * image blobs live here, never in system directories such as /boot.
 */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.A3S_CACHE_DIR) return env.A3S_CACHE_DIR;
  if (env.XDG_CACHE_HOME) return join(env.XDG_CACHE_HOME, "a3s-rootfs");
  return join(homedir(), ".cache", "a3s-rootfs");
}
