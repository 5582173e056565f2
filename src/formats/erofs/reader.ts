import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { chmod } from "node:fs/promises";
import { join, resolve } from "node:path";
import { A3sError } from "../../errors.js";
import { RootfsTree, type ContentRef, type FileInode, type MetadataInit } from "../../tree/index.js";
import { requireTool, runTool } from "../../util/host-tool.js";
import { makeScratchDir, type ImageTree } from "../image/index.js";
import { EROFS_MAGIC, EROFS_SUPERBLOCK_OFFSET as SUPERBLOCK_OFFSET } from "./magic.js";

/**
 * Reads an erofs image into a tree without mounting it.
 *
 * Metadata comes from the image itself, parsed here following the on-disk
 * format of the kernel's erofs_fs.h: the superblock, compact (32-byte) and
 * extended (64-byte) inodes, the xattr ibody and shared xattrs, directory
 * blocks. That is exact for kinds, modes (setuid/setgid/sticky included),
 * owners, mtimes, device numbers, hardlinks (one nid, several names) and
 * every xattr; erofs-utils 1.5's `fsck.erofs --extract` would lose the
 * special mode bits, hardlinks and xattrs, and dump.erofs prints only the
 * low permission bits.
 *
 * File contents stored plain (one contiguous range of the image) are read
 * from the image directly. Compressed, chunked or tail-packed files are
 * extracted once with `fsck.erofs --extract` into a private scratch
 * directory and read from there.
 *
 * The image is untrusted: every read is bounds-checked, a directory reached
 * twice (a loop) or a name that is not a valid single component stops the
 * read with an error, and features this parser does not know are refused
 * by name rather than misread.
 */
export async function readErofsImage(image: string): Promise<ImageTree> {
  const path = resolve(image);
  const parsed = parseErofs(path);
  if (parsed.needExtraction.length === 0) {
    return { tree: parsed.tree, xattrsRead: true, notes: [], dispose: async () => undefined };
  }
  const fsck = requireTool("fsck.erofs", "erofs-utils");
  const scratch = makeScratchDir("a3s-inspect-erofs-");
  try {
    const root = join(scratch.path, "root");
    // --no-preserve: only the bytes are needed from the extraction, so no
    // setuid file or device node from the image is recreated on the host.
    await runTool(fsck, [`--extract=${root}`, "--no-preserve", path], { env: { ...process.env, LC_ALL: "C" } });
    for (const f of parsed.needExtraction) {
      const host = join(root, f.path);
      // An extracted file keeps its mode minus the umask; one without read
      // permission for its owner (e.g. 0200) is made readable to the reader.
      await chmod(host, 0o600).catch(() => undefined);
      f.file.content = { type: "hostFile", path: host, size: f.size };
    }
    return { tree: parsed.tree, xattrsRead: true, notes: [], dispose: scratch.dispose };
  } catch (e) {
    await scratch.dispose();
    throw e;
  }
}


/**
 * Incompatible features that change nothing this parser reads (they are
 * about compressed or chunked file data, which fsck.erofs extracts):
 * zero padding, compression configs/big pclusters, chunked files,
 * compressed head 2 / tail packing, fragments / dedupe.
 */
const KNOWN_INCOMPAT = 0x01 | 0x02 | 0x04 | 0x10 | 0x20;
const INCOMPAT_NAMES: Record<number, string> = { 0x08: "device table", 0x40: "long xattr prefixes", 0x80: "48-bit layout" };

const LAYOUT_FLAT_PLAIN = 0;
const LAYOUT_FLAT_INLINE = 2;

const XATTR_PREFIXES: Record<number, string> = {
  1: "user.",
  2: "system.posix_acl_access",
  3: "system.posix_acl_default",
  4: "trusted.",
  5: "lustre.",
  6: "security.",
};

/** Bounds against hostile images: entries in one image and directory depth. */
const MAX_ENTRIES = 10_000_000;
const MAX_DEPTH = 1024;

interface ErofsInode {
  readonly nid: number;
  readonly mode: number;
  readonly layout: number;
  readonly size: number;
  readonly iu: number;
  readonly uid: number;
  readonly gid: number;
  readonly mtime: number;
  readonly xattrs: Map<string, Uint8Array>;
  /** Where data stored after the inode (FLAT_INLINE tail) starts in the image. */
  readonly inlineAt: number;
}

interface ParsedErofs {
  readonly tree: RootfsTree;
  /** Files whose bytes are not one plain range of the image, to be taken from an extraction. */
  readonly needExtraction: { path: string; size: number; file: FileInode }[];
}

class ImageFile {
  readonly size: number;
  constructor(
    private readonly fd: number,
    readonly path: string,
  ) {
    this.size = fstatSync(fd).size;
  }

  read(offset: number, length: number, what: string): Buffer {
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new A3sError("EFORMAT", `${this.path}: not a valid erofs image: ${what} lies outside the image (offset ${offset}, ${length} bytes)`, {
        subject: this.path,
      });
    }
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, buf, done, length - done, offset + done);
      if (n === 0) break;
      done += n;
    }
    return buf;
  }
}

function parseErofs(path: string): ParsedErofs {
  const fd = openSync(path, "r");
  try {
    return new ErofsParser(new ImageFile(fd, path)).parse();
  } finally {
    closeSync(fd);
  }
}

/** The superblock fields the parser needs. */
interface Superblock {
  readonly blksz: number;
  readonly rootNid: number;
  /** The image's build time: compact inodes store their mtime relative to it. */
  readonly buildTime: number;
  /** Where inode 0 starts; inode n is 32 * n bytes after it. */
  readonly metaBase: number;
  /** Where the shared xattrs start; an inode names one by its 4-byte index from here. */
  readonly xattrBase: number;
}

/** One parse of one image: the superblock, then a walk from the root directory that builds the tree. */
class ErofsParser {
  private readonly sb: Superblock;
  private readonly tree = new RootfsTree();
  private readonly needExtraction: ParsedErofs["needExtraction"] = [];
  /** The first name of each inode, to make later names hardlinks. */
  private readonly firstName = new Map<number, string>();
  private readonly visitedDirs = new Set<number>();
  /**
   * Directories found but not yet read. A stack rather than recursion: the
   * image's nesting is untrusted, and must meet MAX_DEPTH, not overflow the
   * call stack first.
   */
  private readonly pendingDirs: { dir: ErofsInode; path: string; depth: number }[] = [];
  private count = 0;

  constructor(private readonly img: ImageFile) {
    this.sb = this.readSuperblock();
  }

  parse(): ParsedErofs {
    const root = this.readInode(this.sb.rootNid);
    if ((root.mode & 0o170000) !== 0o040000) throw this.bad("the root is not a directory");
    this.tree.addDirectory("/", meta(root));
    this.firstName.set(this.sb.rootNid, "/");
    this.pendingDirs.push({ dir: root, path: "/", depth: 0 });
    for (let next = this.pendingDirs.pop(); next; next = this.pendingDirs.pop()) this.walk(next.dir, next.path, next.depth);
    return { tree: this.tree, needExtraction: this.needExtraction };
  }

  private bad(why: string): A3sError {
    return new A3sError("EFORMAT", `${this.img.path}: not a valid erofs image: ${why}`, { subject: this.img.path });
  }

  private readSuperblock(): Superblock {
    const sb = this.img.read(SUPERBLOCK_OFFSET, 128, "the superblock");
    if (sb.readUInt32LE(0) !== EROFS_MAGIC) throw this.bad("bad magic");
    const blkszbits = sb.readUInt8(12);
    if (blkszbits < 9 || blkszbits > 16) throw this.bad(`block size 2^${blkszbits}`);
    const blksz = 2 ** blkszbits;
    const unknown = sb.readUInt32LE(80) & ~KNOWN_INCOMPAT;
    if (unknown !== 0) {
      const names = Object.entries(INCOMPAT_NAMES)
        .filter(([bit]) => unknown & Number(bit))
        .map(([, n]) => n);
      throw new A3sError("EUNSUPPORTED", `${this.img.path}: erofs feature ${names.join(", ") || `0x${unknown.toString(16)}`} is not supported by inspect`, {
        subject: this.img.path,
        hint: "unpack the image with fsck.erofs --extract and inspect the directory",
      });
    }
    return {
      blksz,
      rootNid: sb.readUInt16LE(14),
      buildTime: Number(sb.readBigUInt64LE(24)),
      metaBase: sb.readUInt32LE(40) * blksz,
      xattrBase: sb.readUInt32LE(44) * blksz,
    };
  }

  /** A compact (32-byte) or extended (64-byte) inode, with its xattrs. */
  private readInode(nid: number): ErofsInode {
    const at = this.sb.metaBase + nid * 32;
    const head = this.img.read(at, 64 <= this.img.size - at ? 64 : 32, `inode ${nid}`);
    const format = head.readUInt16LE(0);
    const extended = (format & 1) === 1;
    const layout = (format >> 1) & 0x7;
    const xattrCount = head.readUInt16LE(2);
    const mode = head.readUInt16LE(4);
    const inodeSize = extended ? 64 : 32;
    if (extended && head.length < 64) throw this.bad(`inode ${nid} is truncated`);
    const size = extended ? Number(head.readBigUInt64LE(8)) : head.readUInt32LE(8);
    if (!Number.isSafeInteger(size)) throw this.bad(`inode ${nid} has size ${head.readBigUInt64LE(8)}`);
    const iu = head.readUInt32LE(16);
    const uid = extended ? head.readUInt32LE(24) : head.readUInt16LE(24);
    const gid = extended ? head.readUInt32LE(28) : head.readUInt16LE(26);
    // A compact inode's mtime is the image's build time plus its (formerly
    // reserved, so zero in older images) 32-bit offset.
    const mtime = extended ? Number(head.readBigInt64LE(32)) : this.sb.buildTime + head.readUInt32LE(12);
    const xattrSize = xattrCount === 0 ? 0 : 12 + (xattrCount - 1) * 4;
    const xattrs = xattrSize === 0 ? new Map<string, Uint8Array>() : this.readXattrs(at + inodeSize, xattrSize, nid);
    return { nid, mode, layout, size, iu, uid, gid, mtime, xattrs, inlineAt: at + inodeSize + xattrSize };
  }

  /** The xattr ibody after an inode: a header naming shared xattrs, then inline entries. */
  private readXattrs(at: number, size: number, nid: number): Map<string, Uint8Array> {
    const body = this.img.read(at, size, `xattrs of inode ${nid}`);
    const out = new Map<string, Uint8Array>();
    const shared = body.readUInt8(4);
    if (12 + shared * 4 > body.length) throw this.bad(`inode ${nid} lists more shared xattrs than fit`);
    for (let s = 0; s < shared; s++) {
      const entryAt = this.sb.xattrBase + body.readUInt32LE(12 + s * 4) * 4;
      const head = this.img.read(entryAt, 4, `shared xattr of inode ${nid}`);
      const entry = this.img.read(entryAt, 4 + head.readUInt8(0) + head.readUInt16LE(2), `shared xattr of inode ${nid}`);
      this.readXattrEntry(entry, 0, nid, out);
    }
    for (let off = 12 + shared * 4; off < body.length; ) off += this.readXattrEntry(body, off, nid, out);
    return out;
  }

  /** One xattr entry (name length, prefix index, value size, name, value) into `out`; returns its padded size. */
  private readXattrEntry(buf: Buffer, off: number, nid: number, out: Map<string, Uint8Array>): number {
    if (off + 4 > buf.length) throw this.bad(`xattr entry of inode ${nid} is truncated`);
    const nameLen = buf.readUInt8(off);
    const index = buf.readUInt8(off + 1);
    const valueSize = buf.readUInt16LE(off + 2);
    if (off + 4 + nameLen + valueSize > buf.length) throw this.bad(`xattr entry of inode ${nid} is truncated`);
    const prefix = XATTR_PREFIXES[index];
    if (prefix === undefined) throw this.bad(`inode ${nid} has an xattr with unknown prefix index ${index}`);
    const name = prefix + buf.toString("latin1", off + 4, off + 4 + nameLen);
    out.set(Buffer.from(name, "latin1").toString("utf8"), Buffer.from(buf.subarray(off + 4 + nameLen, off + 4 + nameLen + valueSize)));
    return Math.ceil((4 + nameLen + valueSize) / 4) * 4;
  }

  /** Where the bytes of an uncompressed inode are, or undefined for the compressed and chunked layouts. */
  private plainRanges(ino: ErofsInode): { offset: number; length: number }[] | undefined {
    const blksz = this.sb.blksz;
    if (ino.size === 0) return [];
    if (ino.layout === LAYOUT_FLAT_PLAIN) return [{ offset: ino.iu * blksz, length: ino.size }];
    if (ino.layout !== LAYOUT_FLAT_INLINE) return undefined;
    const blocks = Math.ceil(ino.size / blksz);
    const head = (blocks - 1) * blksz;
    return [...(head > 0 ? [{ offset: ino.iu * blksz, length: head }] : []), { offset: ino.inlineAt, length: ino.size - head }];
  }

  /** The bytes of a directory or symlink, which erofs never compresses. */
  private readData(ino: ErofsInode, what: string): Buffer {
    const ranges = this.plainRanges(ino);
    if (!ranges) throw this.bad(`${what} is stored compressed (layout ${ino.layout}), which erofs does not do for it`);
    return Buffer.concat(ranges.map((r) => this.img.read(r.offset, r.length, what)));
  }

  /** Adds every entry of a directory, block by block; its subdirectories are queued to be read next. */
  private walk(dir: ErofsInode, dirPath: string, depth: number): void {
    if (depth > MAX_DEPTH) throw this.bad(`directories nest deeper than ${MAX_DEPTH}`);
    if (this.visitedDirs.has(dir.nid)) throw this.bad(`directory ${dirPath} is reached twice (a loop)`);
    this.visitedDirs.add(dir.nid);
    const data = this.readData(dir, `directory ${dirPath}`);
    for (let blockStart = 0; blockStart < data.length; blockStart += this.sb.blksz) {
      const block = data.subarray(blockStart, Math.min(data.length, blockStart + this.sb.blksz));
      for (const { name, nid } of this.directoryBlock(block, dirPath)) {
        if (++this.count > MAX_ENTRIES) throw this.bad(`more than ${MAX_ENTRIES} entries`);
        this.addEntry(dirPath === "/" ? `/${name}` : `${dirPath}/${name}`, nid, depth);
      }
    }
  }

  /**
   * The names in one directory block: 12-byte dirents (nid, name offset,
   * type), then the names, each ending where the next begins (the last at
   * a NUL or the block's end). "." and ".." are left out; any other name
   * must be a single path component.
   */
  private directoryBlock(block: Buffer, dirPath: string): { name: string; nid: number }[] {
    if (block.length < 12) throw this.bad(`directory ${dirPath} has a truncated block`);
    const entries = block.readUInt16LE(8) / 12;
    if (!Number.isInteger(entries) || entries < 1 || entries * 12 > block.length) throw this.bad(`directory ${dirPath} has a bad block`);
    const out: { name: string; nid: number }[] = [];
    for (let j = 0; j < entries; j++) {
      const nid = Number(block.readBigUInt64LE(j * 12));
      const nameStart = block.readUInt16LE(j * 12 + 8);
      let nameEnd = j + 1 < entries ? block.readUInt16LE((j + 1) * 12 + 8) : block.length;
      if (j + 1 === entries) {
        const nul = block.indexOf(0, nameStart);
        if (nul >= 0 && nul < nameEnd) nameEnd = nul;
      }
      if (nameStart < entries * 12 || nameEnd < nameStart || nameEnd > block.length) throw this.bad(`directory ${dirPath} has a bad name offset`);
      const rawName = block.subarray(nameStart, nameEnd);
      const name = rawName.toString("utf8");
      if (name === "." || name === "..") continue;
      if (name === "" || rawName.includes(0x2f) || rawName.includes(0)) throw this.bad(`directory ${dirPath} has an invalid name ${JSON.stringify(name)}`);
      out.push({ name, nid });
    }
    return out;
  }

  /** Adds one name: a hardlink to an inode seen before, else the inode itself by its type. */
  private addEntry(path: string, nid: number, depth: number): void {
    const seen = this.firstName.get(nid);
    const ino = this.readInode(nid);
    const type = ino.mode & 0o170000;
    if (seen !== undefined && type !== 0o040000) {
      this.tree.addHardlink(path, seen);
      return;
    }
    this.firstName.set(nid, path);
    switch (type) {
      case 0o040000:
        this.tree.addDirectory(path, meta(ino));
        this.pendingDirs.push({ dir: ino, path, depth: depth + 1 });
        return;
      case 0o100000:
        this.addFile(path, ino);
        return;
      case 0o120000: {
        const target = this.readData(ino, `symlink ${path}`).toString("utf8");
        if (target === "" || target.includes("\0")) throw this.bad(`symlink ${path} has an invalid target`);
        this.tree.addSymlink(path, target, meta(ino));
        return;
      }
      case 0o020000:
      case 0o060000: {
        // i_u holds the kernel's new_encode_dev() value.
        const major = (ino.iu & 0xfff00) >>> 8;
        const minor = (ino.iu & 0xff) | ((ino.iu >>> 12) & 0xfff00);
        this.tree.addDevice(path, type === 0o020000 ? "char" : "block", major, minor, meta(ino));
        return;
      }
      case 0o010000:
        this.tree.addFifo(path, meta(ino));
        return;
      case 0o140000:
        // Sockets are runtime objects, never part of a rootfs: skipped, as the other readers do.
        return;
      default:
        throw this.bad(`${path} has an unknown file type 0${type.toString(8)}`);
    }
  }

  /** A regular file: a range of the image when stored plain in one piece, else taken from an extraction later. */
  private addFile(path: string, ino: ErofsInode): void {
    const ranges = this.plainRanges(ino);
    const r = ranges?.length === 1 ? ranges[0] : undefined;
    if (r && r.offset + r.length > this.img.size) throw this.bad(`the content of ${path} lies outside the image`);
    const content: ContentRef = r
      ? { type: "blobRange", blobPath: this.img.path, offset: r.offset, size: r.length }
      : { type: "bytes", data: new Uint8Array(0) };
    const file = this.tree.addFile(path, content, meta(ino)) as FileInode;
    if (ino.size > 0 && !r) this.needExtraction.push({ path, size: ino.size, file });
  }
}

function meta(ino: ErofsInode): MetadataInit {
  return { mode: ino.mode & 0o7777, uid: ino.uid, gid: ino.gid, mtime: ino.mtime, xattrs: ino.xattrs };
}
