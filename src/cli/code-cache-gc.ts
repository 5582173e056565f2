import { createHash } from "node:crypto";
import { readdir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { cacheRoot } from "../util/cache-dir.js";
import { packageRoot } from "../util/package-root.js";

/**
 * The name the launcher (a3s-rootfs.cts) gives the code cache of the bundle
 * that is installed now: `<node version>-<arch>-<bundle SHA-256, 16 hex>.bin`.
 * Undefined when there is no bundle (an unbundled development tree).
 */
async function currentCodeCacheName(): Promise<string | undefined> {
  const bundle = await readFile(join(packageRoot(), "dist", "src", "cli", "main.bundle.cjs")).catch(() => undefined);
  if (!bundle) return undefined;
  return `${process.version}-${process.arch}-${createHash("sha256").update(bundle).digest("hex").slice(0, 16)}.bin`;
}

/**
 * `cache gc` for the CLI's code caches: every file but the one the installed
 * bundle and this node use (with `all`, that one too: the next start writes
 * it again). A file of another node version or another build is never read
 * again, so nothing else decides whether it stays.
 */
export async function gcCodeCaches(all: boolean): Promise<{ removed: number; bytes: number }> {
  const dir = join(cacheRoot(), "cli-code-cache");
  const names = await readdir(dir).catch(() => [] as string[]);
  const current = all ? undefined : await currentCodeCacheName();
  let removed = 0;
  let bytes = 0;
  for (const name of names) {
    if (name === current) continue;
    const path = join(dir, name);
    const st = await stat(path).catch(() => undefined);
    if (!st?.isFile()) continue;
    await rm(path, { force: true });
    removed++;
    bytes += st.size;
  }
  return { removed, bytes };
}
