import { A3sError } from "../../errors.js";
import { contentSize, type ContentRef, type Inode, type RootfsTree, type TreeEntry } from "../../tree/index.js";
import { ext4Crc, filesystemSeed, inodeSeed } from "./checksum.js";
import { DIR_FILE_TYPE, directoryBlocks, type DirectoryChild } from "./directory-blocks.js";
import {
  BLOCKS_PER_GROUP,
  EXT4_BLOCK_SIZE,
  EXT4_INODE_SIZE,
  EXTENTS_PER_BLOCK,
  FAST_SYMLINK_MAX,
  INODE_EXTENTS,
  MAX_EXTENT_BLOCKS,
  MAX_INODES_PER_GROUP,
} from "./geometry.js";
import type { Ext4Size } from "./image-size.js";
import { encodeXattrBlock, encodeXattrs } from "./xattr-encoding.js";

/**
 * Where everything of an ext4 image goes, decided before the first byte is
 * written, so the image can be written front to back in one pass.
 *
 * Geometry: 4 KiB blocks in groups of 32768, all the groups' bitmaps and
 * inode tables packed after the group descriptors (flex_bg), and no backup
 * superblocks (sparse_super2 with no backup groups): the image is read-only
 * and rebuilt from its source, so it never needs the copies e2fsck would
 * repair a damaged superblock from, and without them nothing interrupts
 * the data. Every other block is handed out in one ascending sweep, in the
 * tree's walk order (a directory's blocks, then its files' as they come),
 * so each file is one run of blocks (several extents only past 128 MiB)
 * and the used blocks are exactly those before the sweep's end.
 *
 * Inode numbers: the root is 2 (ext4's), lost+found 11 (the first
 * unreserved, where mke2fs puts it), and the tree's walk numbers n ≥ 2
 * become n + 10; used inodes are then 1..N with at most 11 unused.
 */

const ROOT_INO = 2;
export const LOST_FOUND_INO = 11;
const FIRST_TREE_INO = 12;

const EXT4_EXTENTS_FL = 0x80000;
const EXT4_INDEX_FL = 0x1000;

export interface Geometry {
  readonly blocks: number;
  readonly groups: number;
  readonly inodesPerGroup: number;
  readonly inodeTableBlocks: number;
  readonly descriptorBlocks: number;
  readonly blockBitmapAt: number;
  readonly inodeBitmapAt: number;
  readonly inodeTableAt: number;
}

/** One inode as the inode table will hold it. */
export interface InodeRecord {
  readonly ino: number;
  /** The inode's checksum seed (checksum.ts inodeSeed), for its own checksum. */
  readonly seed: number;
  /** The tree's inode; undefined for lost+found, which the writer adds. */
  readonly inode: Inode | undefined;
  readonly nlink: number;
  readonly size: number;
  /** Blocks the inode owns (data, extent tree, xattr block): i_blocks / 8. */
  readonly blocks: number;
  readonly flags: number;
  /** The 60 bytes of i_block: an extent root, a fast symlink's target or a device number. */
  readonly iblock: Buffer;
  readonly xattrRegion: Buffer | undefined;
  readonly xattrBlock: number;
}

/** What goes at a block: prepared blocks, or a file's content (zero-padded to whole blocks). */
export type Placement =
  | { readonly at: number; readonly kind: "blocks"; readonly data: readonly Buffer[] }
  | { readonly at: number; readonly kind: "content"; readonly content: ContentRef; readonly size: number; readonly subject: string };

export interface ImagePlan {
  readonly geometry: Geometry;
  /** Records by inode number (index 0 unused; holes where no inode is). */
  readonly inodes: readonly (InodeRecord | undefined)[];
  /** Highest inode number in use. */
  readonly lastIno: number;
  readonly usedInodes: number;
  /** Blocks [0, usedBlocks) are used, the rest are free. */
  readonly usedBlocks: number;
  readonly directoriesPerGroup: readonly number[];
  /** In ascending block order, after the inode tables. */
  readonly placements: readonly Placement[];
  readonly uuid: Buffer;
  readonly hashSeed: Uint32Array;
  readonly fsSeed: number;
}

/** The geometry for `size` (blocks and inodes counted by ext4ImageSize). */
export function ext4Geometry(size: Ext4Size): Geometry {
  const groups = Math.ceil(size.blocks / BLOCKS_PER_GROUP);
  const perBlock = EXT4_BLOCK_SIZE / EXT4_INODE_SIZE;
  const inodesPerGroup = Math.ceil(Math.ceil(size.inodes / groups) / perBlock) * perBlock;
  if (inodesPerGroup > MAX_INODES_PER_GROUP) {
    throw new A3sError("ESIZE", `${size.inodes} inodes do not fit ${groups} ext4 block groups (a bug in the size estimate)`);
  }
  const inodeTableBlocks = inodesPerGroup / perBlock;
  const descriptorBlocks = Math.ceil((groups * 32) / EXT4_BLOCK_SIZE);
  const blockBitmapAt = 1 + descriptorBlocks;
  const inodeBitmapAt = blockBitmapAt + groups;
  const inodeTableAt = inodeBitmapAt + groups;
  return { blocks: size.blocks, groups, inodesPerGroup, inodeTableBlocks, descriptorBlocks, blockBitmapAt, inodeBitmapAt, inodeTableAt };
}

/** A sweep over free blocks, from the first after the inode tables. */
class BlockSweep {
  next: number;
  constructor(
    first: number,
    private readonly limit: number,
  ) {
    this.next = first;
  }

  take(n: number): number {
    const at = this.next;
    this.next += n;
    if (this.next > this.limit) {
      throw new A3sError("ESIZE", `the tree needs more than the ${this.limit} ext4 blocks its size estimate counted (a bug in the estimate)`, {
        hint: "please report it with the tree's entry count and size",
      });
    }
    return at;
  }
}

export function planExt4Image(tree: RootfsTree, entries: readonly TreeEntry[], size: Ext4Size, uuid: Buffer): ImagePlan {
  const geometry = ext4Geometry(size);
  const fsSeed = filesystemSeed(uuid);
  const hashSeed = new Uint32Array(4);
  for (let i = 0; i < 4; i++) hashSeed[i] = uuid.readUInt32LE(i * 4);
  const sweep = new BlockSweep(geometry.inodeTableAt + geometry.groups * geometry.inodeTableBlocks, geometry.blocks);
  const inodes: (InodeRecord | undefined)[] = [];
  const placements: Placement[] = [];
  const directoriesPerGroup = new Array<number>(geometry.groups).fill(0);

  const ext4Ino = (treeIno: number): number => (treeIno === 1 ? ROOT_INO : treeIno + FIRST_TREE_INO - 2);
  // Each directory's children (by the directory's path), with their numbers.
  const children = new Map<string, DirectoryChild[]>();
  const ownLostFound = tree.root.children.get("lost+found");
  const addLostFound = ownLostFound === undefined;
  children.set("/", addLostFound ? [{ name: Buffer.from("lost+found"), ino: LOST_FOUND_INO, fileType: DIR_FILE_TYPE.directory }] : []);
  for (const e of entries) {
    if (e.path === "/") continue;
    const cut = e.path.lastIndexOf("/");
    const parent = cut === 0 ? "/" : e.path.slice(0, cut);
    const kind = e.inode.kind;
    (children.get(parent) as DirectoryChild[]).push({ name: Buffer.from(e.path.slice(cut + 1), "utf8"), ino: ext4Ino(e.ino), fileType: DIR_FILE_TYPE[kind] });
    if (kind === "directory") children.set(e.path, []);
  }
  // Directories' numbers by path, filled as the walk reaches them (parents first).
  const inoByDir = new Map<string, number>();
  const parentIno = (path: string, ino: number): number => {
    if (path === "/") return ino;
    const cut = path.lastIndexOf("/");
    return cut === 0 ? ROOT_INO : (inoByDir.get(path.slice(0, cut)) as number);
  };

  const record = (r: InodeRecord): void => {
    inodes[r.ino] = r;
    if (r.inode?.kind === "directory" || r.inode === undefined) {
      const group = Math.floor((r.ino - 1) / geometry.inodesPerGroup);
      directoriesPerGroup[group] = (directoriesPerGroup[group] as number) + 1;
    }
  };

  let lastIno = addLostFound ? LOST_FOUND_INO : ROOT_INO;
  for (const e of entries) {
    if (e.kind === "hardlink") continue;
    const ino = ext4Ino(e.ino);
    lastIno = Math.max(lastIno, ino);
    const inode = e.inode;
    const seed = inodeSeed(fsSeed, ino);
    const xattrs = encodeXattrs(inode.xattrs, e.path);
    let xattrBlock = 0;
    const withXattrBlock = (): void => {
      if (!xattrs.needsBlock) return;
      xattrBlock = sweep.take(1);
      placements.push({ at: xattrBlock, kind: "blocks", data: [encodeXattrBlock(xattrs.entries, xattrBlock, xattrBlockChecksum(fsSeed))] });
    };
    const base = { ino, seed, inode, nlink: e.nlink, xattrRegion: xattrs.inInode };
    switch (inode.kind) {
      case "directory": {
        inoByDir.set(e.path, ino);
        const kids = children.get(e.path) as DirectoryChild[];
        const dir = directoryBlocks(ino, parentIno(e.path, ino), kids, seed, hashSeed);
        const at = sweep.take(dir.blocks.length);
        placements.push({ at, kind: "blocks", data: dir.blocks });
        // dir_nlink: a count past ext4's 65000 limit is written as 1 ("many").
        const nlink = e.path === "/" && addLostFound ? e.nlink + 1 : e.nlink;
        const extents = extentTree(at, dir.blocks.length, seed, sweep, placements, e.path);
        withXattrBlock();
        record({
          ...base,
          nlink: nlink >= 65000 ? 1 : nlink,
          size: dir.blocks.length * EXT4_BLOCK_SIZE,
          blocks: dir.blocks.length + extents.treeBlocks + (xattrBlock ? 1 : 0),
          flags: EXT4_EXTENTS_FL | (dir.indexed ? EXT4_INDEX_FL : 0),
          iblock: extents.iblock,
          xattrBlock,
        });
        if (e.path === "/" && addLostFound) {
          const lfSeed = inodeSeed(fsSeed, LOST_FOUND_INO);
          const lf = directoryBlocks(LOST_FOUND_INO, ROOT_INO, [], lfSeed, hashSeed);
          const lfAt = sweep.take(1);
          placements.push({ at: lfAt, kind: "blocks", data: lf.blocks });
          record({
            ino: LOST_FOUND_INO,
            seed: lfSeed,
            inode: undefined,
            nlink: 2,
            size: EXT4_BLOCK_SIZE,
            blocks: 1,
            flags: EXT4_EXTENTS_FL,
            iblock: extentTree(lfAt, 1, lfSeed, sweep, placements, "/lost+found").iblock,
            xattrRegion: undefined,
            xattrBlock: 0,
          });
        }
        break;
      }
      case "file": {
        const bytes = contentSize(inode.content);
        const count = Math.ceil(bytes / EXT4_BLOCK_SIZE);
        const at = count > 0 ? sweep.take(count) : 0;
        if (count > 0) placements.push({ at, kind: "content", content: inode.content, size: bytes, subject: e.path });
        const extents = extentTree(at, count, seed, sweep, placements, e.path);
        withXattrBlock();
        record({ ...base, size: bytes, blocks: count + extents.treeBlocks + (xattrBlock ? 1 : 0), flags: EXT4_EXTENTS_FL, iblock: extents.iblock, xattrBlock });
        break;
      }
      case "symlink": {
        const target = Buffer.from(inode.target, "utf8");
        if (target.length <= FAST_SYMLINK_MAX) {
          const iblock = Buffer.alloc(60);
          target.copy(iblock);
          withXattrBlock();
          record({ ...base, size: target.length, blocks: xattrBlock ? 1 : 0, flags: 0, iblock, xattrBlock });
        } else {
          if (target.length >= EXT4_BLOCK_SIZE) {
            throw new A3sError("ETOOBIG", `the symlink ${e.path} has a target of ${target.length} bytes, longer than ext4 holds`, { subject: e.path });
          }
          const block = Buffer.alloc(EXT4_BLOCK_SIZE);
          target.copy(block);
          const at = sweep.take(1);
          placements.push({ at, kind: "blocks", data: [block] });
          const extents = extentTree(at, 1, seed, sweep, placements, e.path);
          withXattrBlock();
          record({ ...base, size: target.length, blocks: 1 + (xattrBlock ? 1 : 0), flags: EXT4_EXTENTS_FL, iblock: extents.iblock, xattrBlock });
        }
        break;
      }
      case "char":
      case "block":
      case "fifo": {
        const iblock = Buffer.alloc(60);
        if (inode.kind !== "fifo") {
          const { major, minor } = inode;
          // Linux's dev_t: a 12-bit major and a 20-bit minor. Larger numbers
          // (a hostile or foreign archive) would wrap into another device.
          if (major >= 1 << 12 || minor >= 1 << 20) {
            throw new A3sError("EDEVICE", `the device ${e.path} has number ${major}:${minor}, beyond what Linux (and ext4) can hold`, {
              subject: e.path,
            });
          }
          if (major < 256 && minor < 256) iblock.writeUInt32LE((major << 8) | minor, 0);
          else iblock.writeUInt32LE(((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)) >>> 0, 4);
        }
        withXattrBlock();
        record({ ...base, size: 0, blocks: xattrBlock ? 1 : 0, flags: 0, iblock, xattrBlock });
        break;
      }
    }
  }
  const usedInodes = lastIno - (addLostFound ? 0 : 1);
  return {
    geometry,
    inodes,
    lastIno,
    usedInodes,
    usedBlocks: sweep.next,
    directoriesPerGroup,
    placements,
    uuid,
    hashSeed,
    fsSeed,
  };
}

/**
 * The extent tree of `count` blocks from `at`: in the inode when it takes
 * at most 4 extents, else leaf blocks (340 extents each, the last 4 bytes
 * their checksum) indexed from the inode. Returns i_block and the number
 * of tree blocks the inode owns.
 */
function extentTree(at: number, count: number, seed: number, sweep: BlockSweep, placements: Placement[], subject: string): { iblock: Buffer; treeBlocks: number } {
  const extents: { logical: number; start: number; length: number }[] = [];
  for (let done = 0; done < count; done += MAX_EXTENT_BLOCKS) {
    extents.push({ logical: done, start: at + done, length: Math.min(MAX_EXTENT_BLOCKS, count - done) });
  }
  const iblock = Buffer.alloc(60);
  if (extents.length <= INODE_EXTENTS) {
    writeExtentHeader(iblock, extents.length, INODE_EXTENTS, 0);
    extents.forEach((x, n) => writeExtent(iblock, 12 + n * 12, x));
    return { iblock, treeBlocks: 0 };
  }
  const leaves = Math.ceil(extents.length / EXTENTS_PER_BLOCK);
  if (leaves > INODE_EXTENTS) {
    throw new A3sError("ETOOBIG", `${subject} is too large for this writer's ext4 extent tree (more than ${INODE_EXTENTS * EXTENTS_PER_BLOCK} extents)`, { subject });
  }
  const first = sweep.take(leaves);
  const blocks: Buffer[] = [];
  writeExtentHeader(iblock, leaves, INODE_EXTENTS, 1);
  for (let l = 0; l < leaves; l++) {
    const part = extents.slice(l * EXTENTS_PER_BLOCK, (l + 1) * EXTENTS_PER_BLOCK);
    const leaf = Buffer.alloc(EXT4_BLOCK_SIZE);
    writeExtentHeader(leaf, part.length, EXTENTS_PER_BLOCK, 0);
    part.forEach((x, n) => writeExtent(leaf, 12 + n * 12, x));
    const tailAt = 12 + EXTENTS_PER_BLOCK * 12;
    leaf.writeUInt32LE(ext4Crc(seed, leaf.subarray(0, tailAt)), tailAt);
    blocks.push(leaf);
    // Index entry: first logical block, then the leaf's block number (lo 32, hi 16).
    const ix = 12 + l * 12;
    iblock.writeUInt32LE((part[0] as { logical: number }).logical, ix);
    iblock.writeUInt32LE((first + l) % 2 ** 32, ix + 4);
    iblock.writeUInt16LE(Math.floor((first + l) / 2 ** 32), ix + 8);
  }
  placements.push({ at: first, kind: "blocks", data: blocks });
  return { iblock, treeBlocks: leaves };
}

function writeExtentHeader(buf: Buffer, entries: number, max: number, depth: number): void {
  buf.writeUInt16LE(0xf30a, 0);
  buf.writeUInt16LE(entries, 2);
  buf.writeUInt16LE(max, 4);
  buf.writeUInt16LE(depth, 6);
  buf.writeUInt32LE(0, 8);
}

function writeExtent(buf: Buffer, at: number, x: { logical: number; start: number; length: number }): void {
  buf.writeUInt32LE(x.logical, at);
  buf.writeUInt16LE(x.length, at + 4);
  buf.writeUInt16LE(Math.floor(x.start / 2 ** 32), at + 6);
  buf.writeUInt32LE(x.start % 2 ** 32, at + 8);
}

/** An xattr block's checksum: the block number (64-bit), then the block with its checksum field zero. */
function xattrBlockChecksum(fsSeed: number): (block: Buffer, blockNr: number) => number {
  return (block, blockNr) => {
    const nr = Buffer.alloc(8);
    nr.writeBigUInt64LE(BigInt(blockNr));
    return ext4Crc(ext4Crc(fsSeed, nr), block);
  };
}
