import { chmodSync, lstatSync, readdirSync, rmdirSync, unlinkSync } from "node:fs";
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

/**
 * Removes a directory tree, without recursion: Node's own recursive rmSync
 * calls itself once per level and overflows the call stack near 2,000
 * levels, which an extracted hostile image reaches easily. Missing entries
 * are not errors (like `rm -rf`). With `makeWritable`, each directory is
 * made 0700 before it is emptied: an extraction keeps an image's 0555
 * directories, whose entries could not be removed otherwise.
 */
export function removeTreeSync(root: string, opts: { makeWritable?: boolean } = {}): void {
  const stack: { path: string; emptied: boolean }[] = [{ path: root, emptied: false }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1] as { path: string; emptied: boolean };
    if (top.emptied) {
      ignoreMissing(() => rmdirSync(top.path));
      stack.pop();
      continue;
    }
    top.emptied = true;
    const st = lstatOrUndefined(top.path);
    if (!st?.isDirectory()) {
      if (st) ignoreMissing(() => unlinkSync(top.path));
      stack.pop();
      continue;
    }
    if (opts.makeWritable) ignoreMissing(() => chmodSync(top.path, 0o700));
    for (const name of readdirSync(top.path)) stack.push({ path: join(top.path, name), emptied: false });
  }
}

function lstatOrUndefined(path: string): ReturnType<typeof lstatSync> | undefined {
  try {
    return lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}

function ignoreMissing(fn: () => void): void {
  try {
    fn();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
}
