import { FILE_TYPE_BITS } from "../../tree/index.js";
import { ext4Crc, ext4CrcU32 } from "./checksum.js";
import { BLOCKS_PER_GROUP, EXT4_BLOCK_SIZE, EXT4_INODE_SIZE, EXTRA_ISIZE, RESERVED_INODES } from "./geometry.js";
import { LOST_FOUND_INO, type ImagePlan, type InodeRecord } from "./image-plan.js";

/**
 * The superblock, group descriptors, bitmaps and inodes of a planned image
 * (image-plan.ts), in the on-disk layout of fs/ext4/ext4.h, each with its
 * metadata_csum checksum.
 */

const COMPAT = {
  EXT_ATTR: 0x8,
  DIR_INDEX: 0x20,
  SPARSE_SUPER2: 0x200,
};
const INCOMPAT = { FILETYPE: 0x2, EXTENTS: 0x40, FLEX_BG: 0x200 };
const RO_COMPAT = {
  SPARSE_SUPER: 0x1,
  LARGE_FILE: 0x2,
  HUGE_FILE: 0x8,
  DIR_NLINK: 0x20,
  EXTRA_ISIZE: 0x40,
  METADATA_CSUM: 0x400,
};
/** s_flags: directory hashes read names as unsigned chars (dir-hash.ts). */
const EXT2_FLAGS_UNSIGNED_HASH = 0x2;
/** bg_flags: the inode table is zeroed (it is written out in full). */
const EXT4_BG_INODE_ZEROED = 0x4;

/** Block 0: 1024 bytes of boot area, then the superblock. */
export function superblockBlock(plan: ImagePlan, epoch: number): Buffer {
  const g = plan.geometry;
  const block = Buffer.alloc(EXT4_BLOCK_SIZE);
  const sb = block.subarray(1024, 2048);
  const inodesCount = g.inodesPerGroup * g.groups;
  sb.writeUInt32LE(inodesCount, 0x00);
  sb.writeUInt32LE(g.blocks % 2 ** 32, 0x04);
  sb.writeUInt32LE((g.blocks - plan.usedBlocks) % 2 ** 32, 0x0c);
  sb.writeUInt32LE(inodesCount - plan.usedInodes, 0x10);
  sb.writeUInt32LE(0, 0x14); // s_first_data_block: 0 with 4 KiB blocks
  sb.writeUInt32LE(2, 0x18); // s_log_block_size: 1024 << 2
  sb.writeUInt32LE(2, 0x1c); // s_log_cluster_size
  sb.writeUInt32LE(BLOCKS_PER_GROUP, 0x20);
  sb.writeUInt32LE(BLOCKS_PER_GROUP, 0x24);
  sb.writeUInt32LE(g.inodesPerGroup, 0x28);
  sb.writeUInt32LE(epoch32(epoch), 0x30); // s_wtime
  sb.writeUInt16LE(0xffff, 0x36); // s_max_mnt_count: -1, no mount-count checks
  sb.writeUInt16LE(0xef53, 0x38);
  sb.writeUInt16LE(1, 0x3a); // s_state: clean
  sb.writeUInt16LE(1, 0x3c); // s_errors: continue
  sb.writeUInt32LE(epoch32(epoch), 0x40); // s_lastcheck
  sb.writeUInt32LE(1, 0x4c); // s_rev_level: dynamic
  sb.writeUInt32LE(RESERVED_INODES + 1, 0x54); // s_first_ino
  sb.writeUInt16LE(EXT4_INODE_SIZE, 0x58);
  sb.writeUInt32LE(COMPAT.EXT_ATTR | COMPAT.DIR_INDEX | COMPAT.SPARSE_SUPER2, 0x5c);
  sb.writeUInt32LE(INCOMPAT.FILETYPE | INCOMPAT.EXTENTS | INCOMPAT.FLEX_BG, 0x60);
  sb.writeUInt32LE(
    RO_COMPAT.SPARSE_SUPER | RO_COMPAT.LARGE_FILE | RO_COMPAT.HUGE_FILE | RO_COMPAT.DIR_NLINK | RO_COMPAT.EXTRA_ISIZE | RO_COMPAT.METADATA_CSUM,
    0x64,
  );
  plan.uuid.copy(sb, 0x68);
  for (let i = 0; i < 4; i++) sb.writeUInt32LE(plan.hashSeed[i] as number, 0xec + i * 4);
  sb[0xfc] = 1; // s_def_hash_version: half-MD4
  sb.writeUInt32LE(0x000c, 0x100); // s_default_mount_opts: user_xattr, acl (as mke2fs sets)
  sb.writeUInt32LE(epoch32(epoch), 0x108); // s_mkfs_time
  sb.writeUInt32LE(Math.floor(g.blocks / 2 ** 32), 0x150);
  sb.writeUInt32LE(Math.floor((g.blocks - plan.usedBlocks) / 2 ** 32), 0x158);
  sb.writeUInt16LE(EXTRA_ISIZE, 0x15c); // s_min_extra_isize
  sb.writeUInt16LE(EXTRA_ISIZE, 0x15e); // s_want_extra_isize
  sb.writeUInt32LE(EXT2_FLAGS_UNSIGNED_HASH, 0x160);
  sb[0x174] = Math.max(4, Math.ceil(Math.log2(g.groups))); // s_log_groups_per_flex: every group's metadata in one run
  sb[0x175] = 1; // s_checksum_type: crc32c
  // s_backup_bgs (0x24c, 0x250) stay 0: sparse_super2 with no backup groups.
  sb.writeUInt32LE(ext4Crc(0xffffffff, sb.subarray(0, 0x3fc)), 0x3fc);
  return block;
}

/** The group descriptors (32 bytes each), with their checksums and those of the bitmaps they point to. */
export function descriptorBlocks(plan: ImagePlan, blockBitmaps: readonly Buffer[], inodeBitmaps: readonly Buffer[]): Buffer {
  const g = plan.geometry;
  const out = Buffer.alloc(g.descriptorBlocks * EXT4_BLOCK_SIZE);
  for (let group = 0; group < g.groups; group++) {
    const d = out.subarray(group * 32, group * 32 + 32);
    const firstIno = group * g.inodesPerGroup + 1;
    const lastIno = firstIno + g.inodesPerGroup - 1;
    const usedHere = usedInodesIn(plan, firstIno, lastIno);
    const highest = Math.min(Math.max(plan.lastIno, 0), lastIno);
    const groupStart = group * BLOCKS_PER_GROUP;
    const groupBlocks = Math.min(BLOCKS_PER_GROUP, g.blocks - groupStart);
    const usedBlocks = Math.max(0, Math.min(plan.usedBlocks - groupStart, groupBlocks));
    d.writeUInt32LE(g.blockBitmapAt + group, 0x00);
    d.writeUInt32LE(g.inodeBitmapAt + group, 0x04);
    d.writeUInt32LE(g.inodeTableAt + group * g.inodeTableBlocks, 0x08);
    d.writeUInt16LE(groupBlocks - usedBlocks, 0x0c);
    d.writeUInt16LE(g.inodesPerGroup - usedHere, 0x0e);
    d.writeUInt16LE(plan.directoriesPerGroup[group] as number, 0x10);
    d.writeUInt16LE(EXT4_BG_INODE_ZEROED, 0x12);
    d.writeUInt16LE(ext4Crc(plan.fsSeed, blockBitmaps[group] as Buffer) & 0xffff, 0x18);
    d.writeUInt16LE(ext4Crc(plan.fsSeed, (inodeBitmaps[group] as Buffer).subarray(0, g.inodesPerGroup / 8)) & 0xffff, 0x1a);
    // bg_itable_unused: the inodes after the group's last used one.
    d.writeUInt16LE(highest >= firstIno ? lastIno - highest : g.inodesPerGroup, 0x1c);
    // Over the whole descriptor, its checksum field still zero.
    d.writeUInt16LE(ext4Crc(ext4CrcU32(plan.fsSeed, group), d) & 0xffff, 0x1e);
  }
  return out;
}

/** The group-relative index of the unused lost+found inode (the tree brought its own) when it falls in this group. */
function holeIn(plan: ImagePlan, first: number): number | undefined {
  const unused = plan.inodes[LOST_FOUND_INO] === undefined && LOST_FOUND_INO <= plan.lastIno;
  return unused && LOST_FOUND_INO >= first && LOST_FOUND_INO < first + plan.geometry.inodesPerGroup ? LOST_FOUND_INO - first : undefined;
}

function usedInodesIn(plan: ImagePlan, first: number, last: number): number {
  const used = Math.max(0, Math.min(plan.lastIno, last) - first + 1);
  return holeIn(plan, first) === undefined ? used : used - 1;
}

/** Each group's block bitmap: its used blocks, and the bits past the filesystem's end set, as e2fsck expects. */
export function blockBitmaps(plan: ImagePlan): Buffer[] {
  const g = plan.geometry;
  return Array.from({ length: g.groups }, (_, group) => {
    const start = group * BLOCKS_PER_GROUP;
    return bitmapBlock(Math.max(0, Math.min(plan.usedBlocks - start, BLOCKS_PER_GROUP)), Math.min(BLOCKS_PER_GROUP, g.blocks - start));
  });
}

/** Each group's inode bitmap: inodes 1..lastIno but an unused 11, and the bits past the group's inodes set. */
export function inodeBitmaps(plan: ImagePlan): Buffer[] {
  const g = plan.geometry;
  return Array.from({ length: g.groups }, (_, group) => {
    const first = group * g.inodesPerGroup + 1;
    return bitmapBlock(Math.max(0, Math.min(plan.lastIno - first + 1, g.inodesPerGroup)), g.inodesPerGroup, holeIn(plan, first));
  });
}

/** A bitmap block: bits [0, used) set but `hole`, and [end, the block's last bit] set, the padding e2fsck expects past a group's end. */
function bitmapBlock(used: number, end: number, hole?: number): Buffer {
  const bitmap = Buffer.alloc(EXT4_BLOCK_SIZE);
  setBits(bitmap, 0, used);
  if (hole !== undefined) bitmap[hole >> 3] = (bitmap[hole >> 3] as number) & ~(1 << (hole & 7));
  setBits(bitmap, end, EXT4_BLOCK_SIZE * 8);
  return bitmap;
}

function setBits(bitmap: Buffer, from: number, to: number): void {
  let bit = from;
  for (; bit < to && (bit & 7) !== 0; bit++) bitmap[bit >> 3] = (bitmap[bit >> 3] as number) | (1 << (bit & 7));
  const wholeEnd = to & ~7;
  if (bit < wholeEnd) {
    bitmap.fill(0xff, bit >> 3, wholeEnd >> 3);
    bit = wholeEnd;
  }
  for (; bit < to; bit++) bitmap[bit >> 3] = (bitmap[bit >> 3] as number) | (1 << (bit & 7));
}

/** Writes inode `r` into `buf` at `at` (256 bytes, zeroed by the caller). */
export function encodeInode(buf: Buffer, at: number, r: InodeRecord, epoch: number): void {
  const i = buf.subarray(at, at + EXT4_INODE_SIZE);
  const inode = r.inode;
  const mode = inode ? FILE_TYPE_BITS[inode.kind] | inode.mode : FILE_TYPE_BITS.directory | 0o700;
  const uid = inode?.uid ?? 0;
  const gid = inode?.gid ?? 0;
  const time = timeFields(inode?.mtime ?? epoch);
  i.writeUInt16LE(mode, 0x00);
  i.writeUInt16LE(uid & 0xffff, 0x02);
  i.writeUInt32LE(r.size % 2 ** 32, 0x04);
  // atime, ctime, mtime and crtime: the tree records one time per inode.
  for (const field of [0x08, 0x0c, 0x10, 0x90]) i.writeUInt32LE(time.seconds, field);
  for (const field of [0x8c, 0x84, 0x88, 0x94]) i.writeUInt32LE(time.extra, field);
  i.writeUInt16LE(gid & 0xffff, 0x18);
  i.writeUInt16LE(r.nlink, 0x1a);
  const sectors = r.blocks * (EXT4_BLOCK_SIZE / 512);
  i.writeUInt32LE(sectors % 2 ** 32, 0x1c);
  i.writeUInt32LE(r.flags, 0x20);
  r.iblock.copy(i, 0x28);
  i.writeUInt32LE(r.xattrBlock % 2 ** 32, 0x68);
  i.writeUInt32LE(Math.floor(r.size / 2 ** 32), 0x6c);
  i.writeUInt16LE(Math.floor(sectors / 2 ** 32), 0x74);
  i.writeUInt16LE(Math.floor(r.xattrBlock / 2 ** 32), 0x76);
  i.writeUInt16LE(uid >>> 16, 0x78);
  i.writeUInt16LE(gid >>> 16, 0x7a);
  i.writeUInt16LE(EXTRA_ISIZE, 0x80);
  r.xattrRegion?.copy(i, 128 + EXTRA_ISIZE);
  const crc = ext4Crc(r.seed, i);
  i.writeUInt16LE(crc & 0xffff, 0x7c);
  i.writeUInt16LE(crc >>> 16, 0x82);
}

/**
 * A time as ext4 stores it: the low 32 bits as a signed number of seconds,
 * and in the extra field two more bits of epoch (years 1901 to 2446);
 * nanoseconds (the field's upper 30 bits) are 0. Times outside that span
 * are clamped to it.
 */
function timeFields(t: number): { seconds: number; extra: number } {
  const clamped = Math.min(Math.max(Math.trunc(t), -(2 ** 31)), 2 ** 34 - 2 ** 31 - 1);
  const low = ((clamped % 2 ** 32) + 2 ** 32) % 2 ** 32;
  const signed = low >= 2 ** 31 ? low - 2 ** 32 : low;
  return { seconds: low, extra: ((clamped - signed) / 2 ** 32) & 3 };
}

/** s_wtime and friends: the epoch as an unsigned 32-bit time. */
function epoch32(epoch: number): number {
  return Math.min(Math.max(Math.trunc(epoch), 0), 2 ** 32 - 1);
}
