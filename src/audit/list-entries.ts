import { createHash } from "node:crypto";
import { contentSize, openContent, type EntryKind, type RootfsTree } from "../tree/index.js";

/** One line of `inspect`: what a name in the rootfs is. */
export interface EntryListing {
  path: string;
  kind: EntryKind;
  mode: number;
  uid: number;
  gid: number;
  /** Content bytes for files, 0 otherwise. */
  size: number;
  /** Symlink target, or the first name of a hardlinked file. */
  link?: string;
  /** "major:minor" for device nodes. */
  device?: string;
  /** SHA-256 of a regular file's content (a hardlink repeats its file's). */
  sha256?: string;
}

/** Lists every entry of a tree in walk order, hashing file contents once per inode. */
export async function listEntries(tree: RootfsTree): Promise<EntryListing[]> {
  const hashes = new Map<object, string>();
  const out: EntryListing[] = [];
  for (const e of tree.entries()) {
    const i = e.inode;
    const row: EntryListing = { path: e.path, kind: e.kind, mode: i.mode, uid: i.uid, gid: i.gid, size: 0 };
    if (e.kind === "hardlink") row.link = e.linkPath as string;
    if (i.kind === "symlink") row.link = i.target;
    if (i.kind === "char" || i.kind === "block") row.device = `${i.major}:${i.minor}`;
    if (i.kind === "file") {
      row.size = contentSize(i.content);
      let digest = hashes.get(i);
      if (digest === undefined) {
        const h = createHash("sha256");
        for await (const chunk of openContent(i.content, e.path)) h.update(chunk as Buffer);
        digest = h.digest("hex");
        hashes.set(i, digest);
      }
      row.sha256 = digest;
    }
    out.push(row);
  }
  return out;
}
