import { createHash } from "node:crypto";
import { bytesContent, readContent, RootfsTree, type Inode } from "../../src/tree/index.js";

/** security.capability for cap_net_raw+ep (VFS_CAP_REVISION_2). */
export const CAP_NET_RAW = Buffer.from("0100000200200000000000000000000000000000", "hex");

/** Deterministic pseudo-random bytes, so content is not all zeros or text. */
export function patternBytes(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/**
 * A small rootfs with every entry kind and the metadata image tools get
 * wrong: setuid/setgid/sticky, 32-bit owners, a hardlink pair, devices with
 * large numbers, fifo, fast and slow symlinks, xattrs in several namespaces
 * (one set too big for an ext4 inode), odd names, a read-only directory,
 * mtimes before and after the epoch, empty, sparse and multi-block files.
 */
export function imageSampleTree(): RootfsTree {
  const tree = new RootfsTree({ epoch: 1_000_000_000 });
  tree.addDirectory("/", { mode: 0o755, mtime: 1_100_000_000 });
  tree.addDirectory("/etc", { mode: 0o2750, uid: 1000, gid: 1000, mtime: 1_100_000_001 });
  tree.addFile("/etc/hosts", bytesContent("127.0.0.1 localhost\n"), {
    uid: 4_000_000_000,
    gid: 3_000_000_000,
    mtime: 1_100_000_002,
    xattrs: { "user.note": "hello" },
  });
  tree.addSymlink("/etc/localtime", "/usr/share/zoneinfo/UTC", { uid: 5, gid: 6, mtime: 1_100_000_003 });
  tree.addDirectory("/bin", { mtime: 1_100_000_004 });
  tree.addFile("/bin/ping", bytesContent(patternBytes(10_000, 7)), {
    mode: 0o4755,
    mtime: 1_100_000_005,
    xattrs: { "security.capability": CAP_NET_RAW },
  });
  tree.addHardlink("/bin/ping6", "/bin/ping");
  tree.addFile("/bin/sgid", bytesContent("#!/bin/true\n"), { mode: 0o2711, gid: 42, mtime: 900_000_000 });
  tree.addDirectory("/dev", { mtime: 1_100_000_006 });
  tree.addDevice("/dev/null", "char", 1, 3, { mode: 0o666, mtime: 1_100_000_007 });
  tree.addDevice("/dev/vda", "block", 254, 16, { mode: 0o660, gid: 6, mtime: 1_100_000_008 });
  tree.addDevice("/dev/wide", "char", 300, 70_000, { mode: 0o600, mtime: 1_100_000_009 });
  tree.addDirectory("/run", { mtime: 1_100_000_010 });
  tree.addFifo("/run/pipe", { mode: 0o620, uid: 70_000, gid: 70_001, mtime: 1_100_000_011 });
  tree.addDirectory("/tmp", { mode: 0o1777, mtime: 1_100_000_012 });
  tree.addDirectory("/ro", { mode: 0o555, mtime: 1_100_000_013 });
  tree.addFile("/ro/file", bytesContent("read-only dir child\n"), { mode: 0o444, mtime: 2_000_000_000 });
  tree.addFile("/empty", bytesContent(""), { mtime: 1_100_000_014 });
  // Zero blocks in the middle: a writer may store such files sparse.
  const sparse = Buffer.concat([patternBytes(100, 3), Buffer.alloc(3 * 4096), patternBytes(5000, 4)]);
  tree.addFile("/usr/lib/sparse.bin", bytesContent(sparse), { mtime: 1_100_000_015 });
  tree.addFile("/usr/lib/big.bin", bytesContent(patternBytes(300_000, 11)), { mtime: 1_100_000_016 });
  tree.addSymlink("/usr/lib/long-link", "../" + "very-long-directory-name/".repeat(4) + "target", {
    mtime: 1_100_000_017,
  });
  tree.addFile("/usr/lib/labelled", bytesContent("labels\n"), {
    mtime: 1_100_000_018,
    xattrs: { "trusted.overlay.opaque": "y", "user.big": "v".repeat(200), "security.selinux": "system_u:object_r:bin_t:s0\0" },
  });
  tree.addFile("/sp ace/qu\"ote's (1)", bytesContent("odd name\n"), { mtime: 1_100_000_019 });
  return tree;
}

/**
 * A tree an unprivileged mksquashfs 4.5 can still build exactly: mixed
 * owners, devices, fifos, hardlinks, but only user.* xattrs.
 */
export function unprivilegedSampleTree(): RootfsTree {
  const tree = imageSampleTree();
  tree.lookup("/bin/ping", false)?.xattrs.clear();
  (tree.lookup("/usr/lib/labelled", false) as Inode).xattrs = new Map([["user.big", Buffer.from("v".repeat(200))]]);
  return tree;
}

/** A tree every entry of which is root-owned, with no devices and no xattrs but user.*. */
export function rootOwnedTree(): RootfsTree {
  const tree = new RootfsTree({ epoch: 1_000_000_000 });
  tree.addDirectory("/", { mode: 0o755, mtime: 1_100_000_000 });
  tree.addFile("/bin/tool", bytesContent(patternBytes(5000, 9)), { mode: 0o4755, mtime: 1_100_000_001 });
  tree.addHardlink("/bin/tool2", "/bin/tool");
  tree.addSymlink("/lib", "usr/lib", { mtime: 1_100_000_002 });
  tree.addFifo("/run/pipe", { mode: 0o600, mtime: 1_100_000_003 });
  tree.addDirectory("/tmp", { mode: 0o1777, mtime: 1_100_000_004 });
  tree.addFile("/etc/motd", bytesContent("hi\n"), { mtime: 1_100_000_005, xattrs: { "user.x": "1" } });
  return tree;
}

/** What every reader reports for one name in an image. */
export interface ObservedEntry {
  kind: "file" | "directory" | "symlink" | "char" | "block" | "fifo";
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  /** sha256 of a regular file's content. */
  sha256?: string;
  target?: string;
  rdev?: string;
  /** xattr name → hex value; undefined where the reader cannot see xattrs. */
  xattrs?: Record<string, string>;
  /** The reader's inode identity (inode number, nid): equal for hardlinked names. */
  identity: string;
}

/** The tree as the readers should see it. */
export async function expectedView(tree: RootfsTree): Promise<Map<string, ObservedEntry>> {
  const out = new Map<string, ObservedEntry>();
  for (const e of tree.entries()) {
    const i = e.inode;
    const o: ObservedEntry = {
      kind: i.kind,
      mode: i.kind === "symlink" ? 0o777 : i.mode,
      uid: i.uid,
      gid: i.gid,
      mtime: i.mtime,
      identity: String(e.ino),
      xattrs: Object.fromEntries([...i.xattrs].map(([k, v]) => [k, Buffer.from(v).toString("hex")])),
    };
    if (i.kind === "file") o.sha256 = createHash("sha256").update(await readContent(i.content, e.path)).digest("hex");
    if (i.kind === "symlink") o.target = i.target;
    if (i.kind === "char" || i.kind === "block") o.rdev = `${i.major}:${i.minor}`;
    out.set(e.path, o);
  }
  return out;
}
