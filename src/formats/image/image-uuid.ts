import { createHash } from "node:crypto";
import { contentSize, type RootfsTree, type TreeEntry } from "../../tree/index.js";

/**
 * The filesystem UUID stamped into an image: derived from the tree's metadata
 * and the format, never random, so the same tree gives the same bytes. Two
 * different rootfs images still get different UUIDs (a guest that mounts by
 * UUID must not confuse them), without reading any file content: names,
 * kinds, modes, owners, sizes, times, link targets and the epoch are hashed.
 *
 * Laid out as an RFC 9562 version-8 ("custom") UUID.
 */
export function imageUuid(tree: RootfsTree, format: string, entries: readonly TreeEntry[] = tree.entries()): string {
  const b = treeDigest(tree, format, entries).subarray(0, 16);
  b[6] = ((b[6] as number) & 0x0f) | 0x80;
  b[8] = ((b[8] as number) & 0x3f) | 0x80;
  const hex = b.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * A SHA-256 of what an image of `tree` in `format` is made of, without its
 * file content: every entry's name, kind, inode, mode, owner, time, size,
 * link target and device numbers, and the epoch. Same tree, same digest.
 */
export function treeDigest(tree: RootfsTree, format: string, entries: readonly TreeEntry[] = tree.entries()): Buffer {
  const h = createHash("sha256");
  h.update(`a3s-rootfs ${format} ${tree.epoch}\n`);
  for (const e of entries) {
    const i = e.inode;
    const extra =
      i.kind === "file"
        ? String(contentSize(i.content))
        : i.kind === "symlink"
          ? i.target
          : i.kind === "char" || i.kind === "block"
            ? `${i.major}:${i.minor}`
            : "";
    h.update(`${JSON.stringify(e.path)} ${e.kind} ${e.ino} ${i.mode} ${i.uid} ${i.gid} ${i.mtime} ${JSON.stringify(extra)}\n`);
  }
  return h.digest();
}
