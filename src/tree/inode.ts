import type { ContentRef } from "./content.js";

/** What an inode is. A hardlink is not a kind of inode: it is a second name for one. */
export type InodeKind = "file" | "directory" | "symlink" | "char" | "block" | "fifo";

/** What a walk reports for a name: an inode kind, or "hardlink" for a later name of a shared inode. */
export type EntryKind = InodeKind | "hardlink";

/**
 * File metadata as it will appear in the guest. Ownership, modes and device
 * numbers live here and never on the host disk, which is why tar, cpio and
 * image outputs need no root and come out the same on every machine.
 */
export interface Metadata {
  /** Permission bits including setuid (04000), setgid (02000) and sticky (01000). */
  mode: number;
  uid: number;
  gid: number;
  /** Modification time, whole seconds since the Unix epoch. */
  mtime: number;
  /** Extended attributes, e.g. "security.capability" or "user.*". */
  xattrs: Map<string, Uint8Array>;
}

interface InodeBase extends Metadata {
  readonly kind: InodeKind;
}

export interface FileInode extends InodeBase {
  readonly kind: "file";
  content: ContentRef;
}

export interface DirectoryInode extends InodeBase {
  readonly kind: "directory";
  /** Children by name. Never contains "", ".", ".." or names with "/". */
  readonly children: Map<string, Inode>;
}

export interface SymlinkInode extends InodeBase {
  readonly kind: "symlink";
  /** The link text, stored verbatim; it is only interpreted by `RootfsTree.resolve`. */
  target: string;
}

export interface DeviceInode extends InodeBase {
  readonly kind: "char" | "block";
  major: number;
  minor: number;
}

export interface FifoInode extends InodeBase {
  readonly kind: "fifo";
}

export type Inode = FileInode | DirectoryInode | SymlinkInode | DeviceInode | FifoInode;

/**
 * The xattrs of every inode that has none: one shared map, not one each.
 * An empty Map costs about 200 bytes of heap, more than the rest of a file's
 * inode, and most of a rootfs has no xattrs (a tree of /usr, 141k names,
 * spent 26 MiB on empty maps). It cannot be changed: `set` throws, so code
 * that gives an inode xattrs assigns it a map of its own.
 */
export const NO_XATTRS: ReadonlyMap<string, Uint8Array> & Map<string, Uint8Array> = Object.freeze(
  new (class NoXattrs extends Map<string, Uint8Array> {
    override set(name: string): this {
      throw new TypeError(`cannot set the xattr ${name} on the shared empty xattrs: assign the inode a new Map`);
    }
  })(),
);

/** Permission bits a mode may carry; anything above is the file type and is kept in `kind`. */
export const PERMISSION_BITS = 0o7777;

/** The file-type bits of st_mode for each kind, as tar, cpio and the kernel encode them. */
export const FILE_TYPE_BITS: Record<InodeKind, number> = {
  file: 0o100000,
  directory: 0o040000,
  symlink: 0o120000,
  char: 0o020000,
  block: 0o060000,
  fifo: 0o010000,
};
