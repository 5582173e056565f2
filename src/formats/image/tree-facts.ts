import type { Inode, RootfsTree, TreeEntry } from "../../tree/index.js";

/** What the image writers need to know about a tree before choosing how to build it. */
export interface TreeFacts {
  /** Every name, root first (the tree's own walk). */
  readonly entries: readonly TreeEntry[];
  /** Distinct `uid:gid` pairs over all inodes. */
  readonly owners: ReadonlySet<string>;
  /** Paths of character and block devices. */
  readonly devices: readonly string[];
  /** Whether any inode has an xattr at all. */
  readonly hasXattrs: boolean;
  /** Paths of inodes carrying xattrs an unprivileged process cannot set (anything but user.*). */
  readonly privilegedXattrs: readonly string[];
  /** The newest mtime in the tree. */
  readonly newestMtime: number;
}

export function treeFacts(tree: RootfsTree): TreeFacts {
  const entries = tree.entries();
  const owners = new Set<string>();
  const devices: string[] = [];
  const privilegedXattrs: string[] = [];
  let hasXattrs = false;
  let newestMtime = 0;
  const seen = new Set<Inode>();
  for (const e of entries) {
    if (seen.has(e.inode)) continue;
    seen.add(e.inode);
    const i = e.inode;
    owners.add(`${i.uid}:${i.gid}`);
    if (i.kind === "char" || i.kind === "block") devices.push(e.path);
    if (i.xattrs.size > 0) hasXattrs = true;
    if ([...i.xattrs.keys()].some((k) => !k.startsWith("user."))) privilegedXattrs.push(e.path);
    newestMtime = Math.max(newestMtime, i.mtime);
  }
  return { entries, owners, devices, hasXattrs, privilegedXattrs, newestMtime };
}

/** "N entries (a, b, c...)" for error messages. */
export function listSome(paths: readonly string[], max = 3): string {
  const shown = paths.slice(0, max).join(", ");
  return `${paths.length} ${paths.length === 1 ? "entry" : "entries"} (${shown}${paths.length > max ? ", ..." : ""})`;
}
