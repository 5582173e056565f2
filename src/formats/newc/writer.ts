import type { Readable } from "node:stream";
import { A3sError } from "../../errors.js";
import { contentSize, FILE_TYPE_BITS, type Inode, type RootfsTree, type TreeEntry } from "../../tree/index.js";
import { archiveReadable, type ArchiveProducer, type ChunkWriter } from "../archive/index.js";
import { NEWC_HEADER, NEWC_MAGIC, NEWC_TRAILER as TRAILER } from "./magic.js";

/** newc fields are 8 hex digits. */
const FIELD_MAX = 0xffffffff;
/** GNU cpio writes whole 512-byte blocks; so do we, so block-wise readers see no short tail. The kernel does not care. */
const CPIO_BLOCK = 512;

export interface CpioOptions {
  /**
   * Add /dev/console (c 5 1, 0600) and /dev/null (c 1 3, 0666), and /dev
   * itself, when the tree lacks them (default true). The kernel opens
   * /dev/console for PID 1's stdin/stdout/stderr before any devtmpfs is
   * mounted: without it init starts with no console and its output is lost.
   * Device nodes in a tree need no root, so they can always be added here.
   */
  readonly initramfsDevices?: boolean;
}

/** A cpio entry: a tree entry, or a device node the writer adds for the kernel. */
interface CpioEntry {
  readonly path: string;
  readonly kind: TreeEntry["kind"];
  readonly inode: Inode;
  readonly ino: number;
  readonly nlink: number;
}

/**
 * The tree as a Linux initramfs: a cpio "newc" stream.
 *
 * The rules, those of the kernel's init/initramfs.c:
 * - names are relative with no leading "/" ("dev/console"), the root is ".";
 * - headers and data are aligned to 4 bytes; the archive ends with
 *   "TRAILER!!!", then zeros to a 512-byte block (as GNU cpio writes);
 * - all names of one file share ino and nlink; the data is stored once, with
 *   the LAST name, and earlier names have size 0 (GNU cpio's convention; the
 *   kernel links later names to the first and writes the data through them);
 * - symlink targets are the entry's data; devices carry rdevmajor/rdevminor;
 *   the check field is 0; devmajor/devminor are 0 for every entry, so
 *   (0, 0, ino) identifies an inode as the kernel's hardlink table expects;
 * - mtimes outside 0..2^32-1 are clamped to that range.
 * xattrs cannot be stored: newc has no field for them.
 *
 * Throws (before any byte is produced) when a file is 4 GiB or larger: newc
 * sizes are 32 bits, and a wrapped size would corrupt the rest of the archive.
 */
export function cpioStream(tree: RootfsTree, opts: CpioOptions = {}): Readable {
  return archiveReadable(cpioProducer(tree, opts));
}

/** The initramfs of `tree` as a producer (see archive/archive-stream.ts); throws like `cpioStream`. */
export function cpioProducer(tree: RootfsTree, opts: CpioOptions = {}): ArchiveProducer {
  if (hasFileOver(tree, FIELD_MAX)) {
    for (const e of tree.walk()) {
      if (e.inode.kind === "file" && contentSize(e.inode.content) > FIELD_MAX) {
        throw new A3sError("ETOOBIG", `${e.path} is 4 GiB or larger, which a cpio newc archive cannot hold`, {
          subject: e.path,
          hint: "use a tar, ext4, erofs or squashfs output for this tree",
        });
      }
    }
  }
  const devices = opts.initramfsDevices ?? true;
  // The tree is walked as the archive is written, one entry at a time, not
  // listed first: a list of every entry with its path is 15 MiB for /usr.
  return (out) => produceCpio(withDevices(tree, devices), out);
}

/** Whether a regular file in the tree is larger than `max` bytes; a walk without paths, for the check before writing. */
function hasFileOver(tree: RootfsTree, max: number): boolean {
  for (const dirs: Inode[] = [tree.root]; dirs.length > 0; ) {
    const dir = dirs.pop() as Inode;
    if (dir.kind !== "directory") continue;
    for (const child of dir.children.values()) {
      if (child.kind === "directory") dirs.push(child);
      else if (child.kind === "file" && contentSize(child.content) > max) return true;
    }
  }
  return false;
}

/** The tree's entries, then (with `devices`) the device nodes the kernel needs that it lacks. */
function* withDevices(tree: RootfsTree, devices: boolean): Generator<CpioEntry, void, undefined> {
  let maxIno = 0;
  for (const e of tree.walk()) {
    if (e.ino > maxIno) maxIno = e.ino;
    yield e;
  }
  if (devices) yield* missingInitramfsDevices(tree, maxIno);
}

/**
 * The device nodes (and /dev) the kernel needs that the tree lacks, as
 * entries appended after the tree's own (after /dev when it exists, so
 * parents still come before children). Nothing is added when /dev is
 * something other than a directory: the tree's author chose that.
 */
function missingInitramfsDevices(tree: RootfsTree, maxIno: number): CpioEntry[] {
  const dev = tree.lookup("/dev", false);
  if (dev && dev.kind !== "directory") return [];
  let ino = maxIno;
  const meta = { uid: 0, gid: 0, mtime: tree.epoch, xattrs: new Map<string, Uint8Array>() };
  const added: CpioEntry[] = [];
  if (!dev) {
    const inode: Inode = { kind: "directory", children: new Map(), mode: 0o755, ...meta };
    added.push({ path: "/dev", kind: "directory", inode, ino: ++ino, nlink: 2 });
  }
  const wanted = [
    { name: "console", mode: 0o600, major: 5, minor: 1 },
    { name: "null", mode: 0o666, major: 1, minor: 3 },
  ];
  for (const d of wanted) {
    if (dev?.kind === "directory" && dev.children.has(d.name)) continue;
    const inode: Inode = { kind: "char", major: d.major, minor: d.minor, mode: d.mode, ...meta };
    added.push({ path: `/dev/${d.name}`, kind: "char", inode, ino: ++ino, nlink: 1 });
  }
  return added;
}

function* produceCpio(entries: Iterable<CpioEntry>, out: ChunkWriter): Generator<void, void, void> {
  // The data of a file with several names goes with its last name: the one
  // that brings the count of names written to its link count.
  const namesWritten = new Map<Inode, number>();

  for (const e of entries) {
    const inode = e.inode;
    let size = 0;
    let body: Uint8Array | undefined;
    let carriesContent = false;
    if (inode.kind === "file") {
      if (e.nlink <= 1) carriesContent = true;
      else {
        const written = (namesWritten.get(inode) ?? 0) + 1;
        carriesContent = written === e.nlink;
        if (carriesContent) namesWritten.delete(inode);
        else namesWritten.set(inode, written);
      }
      if (carriesContent) size = contentSize(inode.content);
    } else if (inode.kind === "symlink") {
      // Also for a second name of a symlink: the kernel links only regular
      // files, so each name of any other kind is written out in full.
      body = Buffer.from(inode.target, "utf8");
      size = body.length;
    }
    const name = Buffer.from(e.path === "/" ? "." : e.path.slice(1), "utf8");
    writeNewcHeader(out, {
      ino: e.ino,
      mode: FILE_TYPE_BITS[inode.kind] | inode.mode,
      uid: inode.uid,
      gid: inode.gid,
      nlink: e.nlink,
      mtime: Math.min(Math.max(inode.mtime, 0), FIELD_MAX),
      size,
      rdevMajor: inode.kind === "char" || inode.kind === "block" ? inode.major : 0,
      rdevMinor: inode.kind === "char" || inode.kind === "block" ? inode.minor : 0,
      name,
    });
    if (body) out.bytes(body);
    else if (carriesContent && inode.kind === "file") yield* out.content(inode.content, size, e.path);
    out.zeros(pad4(size));
    if (out.ready.length > 0) yield;
  }
  writeNewcHeader(out, {
    ino: 0,
    mode: 0,
    uid: 0,
    gid: 0,
    nlink: 1,
    mtime: 0,
    size: 0,
    rdevMajor: 0,
    rdevMinor: 0,
    name: Buffer.from(TRAILER),
  });
  const rest = out.total % CPIO_BLOCK;
  if (rest !== 0) out.zeros(CPIO_BLOCK - rest);
}

interface NewcHeader {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  size: number;
  rdevMajor: number;
  rdevMinor: number;
  name: Buffer;
}

/** Writes the 110-byte header, the name with its NUL, and the zeros that align what follows to 4 bytes. */
function writeNewcHeader(out: ChunkWriter, h: NewcHeader): void {
  const nameSize = h.name.length + 1;
  const total = NEWC_HEADER + nameSize + pad4(NEWC_HEADER + nameSize);
  if (total > 1 << 20) {
    throw new A3sError("ETOOBIG", `a cpio entry name of ${h.name.length} bytes is too long`, {
      subject: h.name.toString(),
    });
  }
  const { buf, at } = out.region(total);
  buf.write(NEWC_MAGIC, at, "latin1");
  hex8(buf, at + 6, h.ino);
  hex8(buf, at + 14, h.mode);
  hex8(buf, at + 22, h.uid);
  hex8(buf, at + 30, h.gid);
  hex8(buf, at + 38, h.nlink);
  hex8(buf, at + 46, h.mtime);
  hex8(buf, at + 54, h.size);
  hex8(buf, at + 62, 0); // devmajor
  hex8(buf, at + 70, 0); // devminor
  hex8(buf, at + 78, h.rdevMajor);
  hex8(buf, at + 86, h.rdevMinor);
  hex8(buf, at + 94, nameSize);
  hex8(buf, at + 102, 0); // check
  h.name.copy(buf, at + NEWC_HEADER);
}

/** ASCII codes of the hex digits GNU cpio writes (upper case). */
const HEX_DIGITS = Buffer.from("0123456789ABCDEF", "latin1");

/** Eight hex digits of a 32-bit value, written straight into the header (no string per field). */
function hex8(buf: Buffer, at: number, n: number): void {
  for (let i = 0; i < 8; i++) buf[at + i] = HEX_DIGITS[(n >>> (28 - 4 * i)) & 15] as number;
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}
