import { withContentBytes, type FileInode, type Inode, type RootfsTree } from "../tree/index.js";

/**
 * The regular file a path names, following symlinks inside the tree (with
 * the tree's chroot rules), or undefined when it is missing, is not a
 * regular file, or the lookup fails (a loop, a file used as a directory).
 */
export function lookupFile(tree: RootfsTree, path: string): { path: string; inode: FileInode } | undefined {
  const r = safeResolve(tree, path);
  return r?.inode.kind === "file" ? { path: r.path, inode: r.inode } : undefined;
}

/** `tree.resolve` that answers undefined instead of throwing ELOOP or ENOTDIR for hostile links. */
export function safeResolve(tree: RootfsTree, path: string, followFinal = true): { path: string; inode: Inode } | undefined {
  try {
    return tree.resolve(path, followFinal);
  } catch {
    return undefined;
  }
}

/**
 * The text of a small configuration file in the tree, at most `maxBytes`
 * (a larger file is read up to that size: config files in a rootfs are
 * small, and a hostile one must not make the audit read gigabytes).
 */
export async function readTreeText(tree: RootfsTree, path: string, maxBytes = 1 << 20): Promise<string | undefined> {
  const file = lookupFile(tree, path);
  if (!file) return undefined;
  const data = await withContentBytes(file.inode.content, path, (src) => src.read(0, maxBytes));
  return data.toString("utf8");
}
