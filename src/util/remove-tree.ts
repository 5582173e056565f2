import { chmod, readdir, rm } from "node:fs/promises";
import { join } from "node:path";

/**
 * Removes a tree this process wrote: a temporary output, a staging copy, a
 * build's scratch directory, or an output being replaced. Such a tree keeps
 * the rootfs's own modes, and a read-only directory (0555) stops a non-root
 * removal of its entries, so on failure every directory in it is made
 * owner-writable and the removal is tried once more. Symbolic links are
 * never followed (readdir's file types are the links' own).
 *
 * Callers await every write into the tree before this runs (cancellation
 * settles the writes it stops), so nothing can land in it afterwards.
 */
export async function removeTree(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true });
    return;
  } catch {
    // fall through: open every directory, then try again
  }
  const open = async (dir: string): Promise<void> => {
    await chmod(dir, 0o700).catch(() => undefined);
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await open(join(dir, e.name));
    }
  };
  await open(path);
  await rm(path, { recursive: true, force: true });
}
