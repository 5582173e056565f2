import { A3sError } from "../errors.js";
import { contentSize, type ContentRef } from "./content.js";
import { DEFAULT_EPOCH } from "./epoch.js";
import {
  NO_XATTRS,
  PERMISSION_BITS,
  type DirectoryInode,
  type EntryKind,
  type Inode,
  type InodeKind,
  type Metadata,
} from "./inode.js";
import { joinRootfsPath, splitRootfsPath } from "./path.js";

/**
 * Symlinks followed in one lookup before it fails with ELOOP. This is the
 * tree's own bound against link loops, not Linux's: the kernel stops after 40
 * (MAXSYMLINKS in include/linux/namei.h), so a path that takes 41 to 255 hops
 * resolves here while a build or an audit reads the tree, but not in the
 * guest. The tests for hostile layers hold the tree to following 200 links.
 */
export const MAX_SYMLINK_HOPS = 255;

/**
 * Bounds every tree keeps, whatever filled it (a tar, a cpio, a directory,
 * an image, layers): the same input could otherwise build a tree that no
 * filesystem can hold, that exhausts memory, or (with symlinks grafting
 * short names onto deep paths) nests deep enough to overflow a recursive
 * walk or a path buffer downstream (deep-path denial of service).
 */
export interface TreeLimits {
  /** Most names in the tree, the root included (default 2,000,000): memory grows with each. */
  readonly maxEntries?: number;
  /** Most components in a path (default 1024; real rootfs stay under 30). */
  readonly maxDepth?: number;
}

/** Linux's PATH_MAX, which counts the terminating NUL: a path has at most 4095 bytes. */
export const PATH_MAX = 4096;
/** Linux's NAME_MAX: the longest name of one directory entry, in bytes. */
export const NAME_MAX = 255;
export const DEFAULT_TREE_LIMITS: Required<TreeLimits> = { maxEntries: 2_000_000, maxDepth: 1024 };

export interface MetadataInit {
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  xattrs?: Map<string, Uint8Array> | Record<string, Uint8Array | string>;
}

/** One name in a walk of the tree. */
export interface TreeEntry {
  /** Canonical absolute path inside the rootfs ("/" for the root). */
  readonly path: string;
  /** The inode kind, or "hardlink" for the second and later names of a file with several names. */
  readonly kind: EntryKind;
  readonly inode: Inode;
  /** For "hardlink": the path of the first name of the inode in walk order. */
  readonly linkPath?: string;
  /** A stable inode number: equal for all names of one inode, assigned in walk order from 1. */
  readonly ino: number;
  /** Number of names of this inode in the tree (directories: 2 + subdirectories). */
  readonly nlink: number;
}

interface Resolved {
  /** The components of the resolved path, after every symlink was followed. */
  readonly parts: string[];
  readonly inode: Inode;
}

/**
 * The single in-memory model of a root filesystem.
 *
 * Rules (each has a test in test/tree):
 * - every path is normalised by `splitRootfsPath`; ".." above the root is refused;
 * - symlinks are resolved inside the tree with chroot semantics: an absolute
 *   target restarts at the tree's root and ".." at the root stays there, so no
 *   lookup can leave the tree; more than MAX_SYMLINK_HOPS links fail with ELOOP;
 * - adding a non-directory where anything exists replaces it; a directory over a
 *   directory keeps the children and takes the new metadata; a directory over
 *   any other entry (a symlink included) replaces that entry, never its target;
 * - missing parents are created as directories 0755, owned 0:0, with mtime =
 *   the tree's epoch;
 * - a hardlink is the same inode object under two names, so every output can
 *   keep one inode identity;
 * - `entries()` walks in sorted order, parents before children.
 */
export class RootfsTree {
  readonly root: DirectoryInode;
  /** mtime given to entries that do not state one (SOURCE_DATE_EPOCH). */
  readonly epoch: number;
  readonly limits: Required<TreeLimits>;
  /** Names in the tree, the root included, kept as entries are added and removed. */
  private names = 1;

  constructor(opts: { epoch?: number; limits?: TreeLimits } = {}) {
    this.epoch = opts.epoch ?? DEFAULT_EPOCH;
    this.limits = { ...DEFAULT_TREE_LIMITS, ...definedOnly(opts.limits ?? {}) };
    for (const [key, value] of Object.entries(this.limits)) {
      if (!Number.isSafeInteger(value) || value < 1) throw new A3sError("EUSAGE", `tree limit ${key} must be a positive integer, not ${value}`);
    }
    const m = this.metadata("directory", {});
    this.root = { kind: "directory", children: new Map(), mode: m.mode, uid: m.uid, gid: m.gid, mtime: m.mtime, xattrs: m.xattrs };
  }

  // ---- adding -------------------------------------------------------------

  addDirectory(path: string, meta: MetadataInit = {}): DirectoryInode {
    const m = this.metadata("directory", meta);
    const inode: DirectoryInode = { kind: "directory", children: new Map(), mode: m.mode, uid: m.uid, gid: m.gid, mtime: m.mtime, xattrs: m.xattrs };
    return this.place(path, inode) as DirectoryInode;
  }

  addFile(path: string, content: ContentRef, meta: MetadataInit = {}): Inode {
    const m = this.metadata("file", meta);
    return this.place(path, { kind: "file", content, mode: m.mode, uid: m.uid, gid: m.gid, mtime: m.mtime, xattrs: m.xattrs });
  }

  addSymlink(path: string, target: string, meta: MetadataInit = {}): Inode {
    if (target === "" || target.includes("\0")) {
      throw new A3sError("EPATH", `invalid symlink target for ${path}: ${JSON.stringify(target)}`, { subject: path });
    }
    if (Buffer.byteLength(target) >= PATH_MAX) {
      throw new A3sError("EPATH", `the symlink ${shortPath(path)} has a target of ${Buffer.byteLength(target)} bytes; Linux allows ${PATH_MAX - 1}`, { subject: path });
    }
    const m = this.metadata("symlink", meta);
    return this.place(path, { kind: "symlink", target, mode: m.mode, uid: m.uid, gid: m.gid, mtime: m.mtime, xattrs: m.xattrs });
  }

  addDevice(path: string, kind: "char" | "block", major: number, minor: number, meta: MetadataInit = {}): Inode {
    for (const n of [major, minor]) {
      if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
        throw new A3sError("EDEVICE", `invalid device number ${n} for ${path}`, { subject: path });
      }
    }
    const m = this.metadata(kind, meta);
    return this.place(path, { kind, major, minor, mode: m.mode, uid: m.uid, gid: m.gid, mtime: m.mtime, xattrs: m.xattrs });
  }

  addFifo(path: string, meta: MetadataInit = {}): Inode {
    const m = this.metadata("fifo", meta);
    return this.place(path, { kind: "fifo", mode: m.mode, uid: m.uid, gid: m.gid, mtime: m.mtime, xattrs: m.xattrs });
  }

  /**
   * Gives the inode at `existingPath` a second name. The existing path's
   * parents are resolved inside the tree; its last component is not followed
   * (a hardlink to a symlink links the symlink, as link(2) and tar do).
   */
  addHardlink(path: string, existingPath: string): Inode {
    const target = this.resolve(existingPath, false);
    if (!target) {
      throw new A3sError("ENOENT", `hardlink ${path} points to ${existingPath}, which does not exist`, {
        subject: path,
      });
    }
    if (target.inode.kind === "directory") {
      throw new A3sError("EPERM", `hardlink ${path} points to the directory ${existingPath}`, { subject: path });
    }
    return this.place(path, target.inode);
  }

  /** Removes the name at `path` (a directory with its children). Returns false if nothing was there. */
  remove(path: string): boolean {
    const parts = splitRootfsPath(path);
    const name = parts.pop();
    if (name === undefined) throw new A3sError("EPERM", "the rootfs root cannot be removed", { subject: "/" });
    const parent = this.resolveParts(parts, true, false);
    if (!parent || parent.inode.kind !== "directory") return false;
    const gone = parent.inode.children.get(name);
    if (!gone) return false;
    parent.inode.children.delete(name);
    this.names -= namesUnder(gone);
    return true;
  }

  // ---- lookups ------------------------------------------------------------

  /** The inode at `path`, following symlinks inside the tree (the last one too unless followFinal is false). */
  lookup(path: string, followFinal = true): Inode | undefined {
    return this.resolve(path, followFinal)?.inode;
  }

  /** Like `lookup`, also returning the canonical path it resolved to. */
  resolve(path: string, followFinal = true): { path: string; inode: Inode } | undefined {
    const r = this.resolveParts(splitRootfsPath(path), followFinal, false);
    return r && { path: joinRootfsPath(r.parts), inode: r.inode };
  }

  // ---- walking ------------------------------------------------------------

  /**
   * Every name in the tree, root first, each directory before its children,
   * children in sorted order. Inode numbers and link counts are computed here
   * so they are stable for a given tree whatever order it was built in.
   */
  entries(): TreeEntry[] {
    return [...this.walk()];
  }

  /**
   * The same names as `entries()`, in the same order with the same inode
   * numbers and link counts, one at a time: a writer that streams the tree
   * holds one entry, not a list of all of them with every path (15 MiB for
   * a tree of /usr). The tree must not change while a walk is under way.
   */
  *walk(): Generator<TreeEntry, void, undefined> {
    // Iterative, with an explicit stack: a recursive walk's depth would be
    // the tree's, and the tree's depth comes from untrusted input.
    // Names per inode, kept only for inodes with more than one (hardlinks):
    // every other inode has one name, a directory 2 + its subdirectories.
    const once = new Set<Inode>();
    const names = new Map<Inode, number>();
    for (const dirs: DirectoryInode[] = [this.root]; dirs.length > 0; ) {
      for (const child of (dirs.pop() as DirectoryInode).children.values()) {
        if (child.kind === "directory") dirs.push(child);
        else if (names.has(child)) names.set(child, (names.get(child) as number) + 1);
        else if (once.has(child)) {
          once.delete(child);
          names.set(child, 2);
        } else once.add(child);
      }
    }
    once.clear();

    // The first name and inode number of each inode with several names.
    const firstPath = new Map<Inode, { path: string; ino: number }>();
    let nextIno = 1;
    // Pushed in reverse so they pop in sorted order: parents before children, depth first.
    const stack: { path: string; inode: Inode }[] = [{ path: "/", inode: this.root }];
    while (stack.length > 0) {
      const { path, inode } = stack.pop() as { path: string; inode: Inode };
      const nlink = names.get(inode);
      if (nlink !== undefined) {
        const seen = firstPath.get(inode);
        if (seen) {
          yield { path, kind: "hardlink", inode, linkPath: seen.path, ino: seen.ino, nlink };
          continue;
        }
        firstPath.set(inode, { path, ino: nextIno });
      }
      const ino = nextIno++;
      if (inode.kind !== "directory") {
        yield { path, kind: inode.kind, inode, ino, nlink: nlink ?? 1 };
        continue;
      }
      const childNames = [...inode.children.keys()].sort();
      let subdirs = 0;
      for (const n of childNames) if (inode.children.get(n)?.kind === "directory") subdirs++;
      const prefix = path === "/" ? "/" : path + "/";
      for (let i = childNames.length - 1; i >= 0; i--) {
        const n = childNames[i] as string;
        stack.push({ path: prefix + n, inode: inode.children.get(n) as Inode });
      }
      yield { path, kind: "directory", inode, ino, nlink: 2 + subdirs };
    }
  }

  /** Number of names (entries) in the tree, the root included. */
  get entryCount(): number {
    return this.names;
  }

  /** Bytes of regular-file content, each inode counted once however many names it has. */
  contentBytes(): number {
    let total = 0;
    const seen = new Set<Inode>();
    for (const e of this.walk()) {
      if (e.inode.kind === "file" && !seen.has(e.inode)) {
        seen.add(e.inode);
        total += contentSize(e.inode.content);
      }
    }
    return total;
  }

  // ---- internals ----------------------------------------------------------

  /**
   * An inode's metadata from what the caller gave. Inodes are object
   * literals that list these fields one by one (not spread from this
   * object): a spread literal takes about 40 bytes more per inode.
   */
  private metadata(kind: InodeKind, init: MetadataInit): Metadata {
    const mode = init.mode ?? (kind === "directory" ? 0o755 : kind === "symlink" ? 0o777 : 0o644);
    let xattrs: Map<string, Uint8Array> = NO_XATTRS;
    if (init.xattrs instanceof Map) {
      if (init.xattrs.size > 0) xattrs = new Map(init.xattrs);
    } else if (init.xattrs && Object.keys(init.xattrs).length > 0) {
      xattrs = new Map();
      for (const [k, v] of Object.entries(init.xattrs)) xattrs.set(k, typeof v === "string" ? Buffer.from(v) : v);
    }
    for (const [what, n] of [
      ["uid", init.uid ?? 0],
      ["gid", init.gid ?? 0],
    ] as const) {
      if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
        throw new A3sError("EOWNER", `invalid ${what} ${n}`);
      }
    }
    return {
      mode: mode & PERMISSION_BITS,
      uid: init.uid ?? 0,
      gid: init.gid ?? 0,
      mtime: Math.floor(init.mtime ?? this.epoch),
      xattrs,
    };
  }

  private place(path: string, inode: Inode): Inode {
    const parts = splitRootfsPath(path);
    const name = parts.pop();
    if (name === undefined) {
      // The root can take new metadata but can never become anything other
      // than a directory: a layer that turns "/" into a symlink would
      // otherwise redirect every later write.
      if (inode.kind !== "directory") {
        throw new A3sError("EPERM", `the rootfs root cannot be replaced by a ${inode.kind}`, { subject: "/" });
      }
      copyMetadata(inode, this.root);
      return this.root;
    }
    const parent = this.resolveParts(parts, true, true, path);
    if (!parent || parent.inode.kind !== "directory") {
      throw new A3sError("ENOTDIR", `cannot add ${path}: a parent is not a directory`, { subject: path });
    }
    const existing = parent.inode.children.get(name);
    if (existing && existing.kind === "directory" && inode.kind === "directory" && existing !== inode) {
      copyMetadata(inode, existing);
      return existing;
    }
    if (!existing) this.checkNewName(parent.parts, name, path);
    parent.inode.children.set(name, inode);
    this.names += 1 - (existing ? namesUnder(existing) : 0);
    return inode;
  }

  /**
   * The tree's limits, checked for a name about to be added under the
   * directory at `parentParts` (its resolved path): NAME_MAX for the name,
   * PATH_MAX and the depth bound for where it really lands (after every
   * symlink in its parents), and the entry budget. `given` is the path as
   * the input named it, for the message.
   */
  private checkNewName(parentParts: readonly string[], name: string, given: string): void {
    const nameBytes = Buffer.byteLength(name);
    if (nameBytes > NAME_MAX) {
      throw new A3sError("EPATH", `cannot add ${shortPath(given)}: a name of ${nameBytes} bytes is longer than NAME_MAX (${NAME_MAX}), which no Linux filesystem can hold`, {
        subject: given,
        hint: "the input is malformed or hostile",
      });
    }
    const depth = parentParts.length + 1;
    if (depth > this.limits.maxDepth) {
      throw new A3sError("ELIMIT", `cannot add ${shortPath(given)}: it lands ${depth} directories deep, deeper than the tree allows (maxDepth ${this.limits.maxDepth})`, {
        subject: given,
        hint: "the input nests directories deeper than any real rootfs (symlinks can graft short names onto deep paths)",
      });
    }
    let bytes = nameBytes + 1;
    for (const p of parentParts) bytes += Buffer.byteLength(p) + 1;
    if (bytes >= PATH_MAX) {
      throw new A3sError("EPATH", `cannot add ${shortPath(given)}: it resolves to a path of ${bytes} bytes, longer than PATH_MAX allows (${PATH_MAX - 1} bytes and the NUL)`, {
        subject: given,
        hint: "the input nests paths deeper than any Linux filesystem allows (symlinks can graft short names onto long paths)",
      });
    }
    if (this.names >= this.limits.maxEntries) {
      throw new A3sError("ELIMIT", `cannot add ${shortPath(given)}: the tree already has ${this.names} entries (maxEntries)`, {
        subject: given,
        hint: "a hostile input, or a very large trusted one: raise the entry limit",
      });
    }
  }

  /**
   * Walks `parts` from the root with chroot semantics. With `create`, missing
   * directories on the way are made (mkdir -p inside the tree). Returns
   * undefined when a component is missing (and not created).
   */
  private resolveParts(parts: readonly string[], followFinal: boolean, create: boolean, given = ""): Resolved | undefined {
    const stack: Inode[] = [this.root];
    const names: string[] = [];
    // Components still to walk, the next one last: a symlink pushes its target's in front in one step.
    const queue = [...parts].reverse();
    let hops = 0;
    while (queue.length > 0) {
      const part = queue.pop() as string;
      if (part === "" || part === ".") continue;
      if (part === "..") {
        // ".." at the root stays at the root, as in a chroot.
        if (names.length > 0) {
          names.pop();
          stack.pop();
        }
        continue;
      }
      const dir = stack[stack.length - 1] as Inode;
      if (dir.kind !== "directory") {
        throw new A3sError("ENOTDIR", `${joinRootfsPath(names)} is not a directory`, {
          subject: joinRootfsPath(names),
        });
      }
      let child = dir.children.get(part);
      if (!child) {
        if (!create) return undefined;
        this.checkNewName(names, part, given);
        const m = this.metadata("directory", {});
        child = { kind: "directory", children: new Map(), mode: m.mode, uid: m.uid, gid: m.gid, mtime: m.mtime, xattrs: m.xattrs };
        dir.children.set(part, child);
        this.names++;
      }
      if (child.kind === "symlink" && (queue.length > 0 || followFinal)) {
        if (++hops > MAX_SYMLINK_HOPS) {
          throw new A3sError("ELOOP", `too many levels of symbolic links resolving ${joinRootfsPath(parts)}`, {
            subject: joinRootfsPath(parts),
          });
        }
        if (child.target.startsWith("/")) {
          stack.length = 1;
          names.length = 0;
        }
        const target = child.target.split("/");
        for (let i = target.length - 1; i >= 0; i--) queue.push(target[i] as string);
        continue;
      }
      names.push(part);
      stack.push(child);
    }
    return { parts: names, inode: stack[stack.length - 1] as Inode };
  }
}

/** How many names an entry takes: itself, and for a directory everything under it (counted without recursion). */
function namesUnder(inode: Inode): number {
  let n = 1;
  for (const dirs: Inode[] = [inode]; dirs.length > 0; ) {
    const dir = dirs.pop() as Inode;
    if (dir.kind !== "directory") continue;
    n += dir.children.size;
    for (const child of dir.children.values()) if (child.kind === "directory") dirs.push(child);
  }
  return n;
}

/** A path for a message: whole when short, else its start and end with its length (the error's subject has it whole). */
function shortPath(path: string): string {
  if (path.length <= 160) return path;
  return `${path.slice(0, 80)}…${path.slice(-60)} (${Buffer.byteLength(path)} bytes)`;
}

function definedOnly(limits: TreeLimits): TreeLimits {
  return Object.fromEntries(Object.entries(limits).filter(([, v]) => v !== undefined)) as TreeLimits;
}

function copyMetadata(from: Metadata, to: Metadata): void {
  to.mode = from.mode;
  to.uid = from.uid;
  to.gid = from.gid;
  to.mtime = from.mtime;
  to.xattrs = from.xattrs;
}
