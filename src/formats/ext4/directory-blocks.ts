import { ext4Crc } from "./checksum.js";
import { halfMd4Hash } from "./dir-hash.js";
import { DIR_BLOCK_PAYLOAD, EXT4_BLOCK_SIZE, HTREE_NODE_ENTRIES, HTREE_ROOT_ENTRIES } from "./geometry.js";

/**
 * A directory's blocks in ext4's format (fs/ext4/ext4.h, namei.c): one
 * block of plain entries when they fit, else a hash tree ("htree", the
 * dir_index feature) whose leaves are blocks of plain entries sorted by the
 * hash of their names, so the kernel finds a name in a large directory by
 * reading two or three blocks instead of all of them.
 *
 * Every leaf ends with a 12-byte tail holding its checksum (metadata_csum);
 * index blocks end with an 8-byte one.
 */

/** ext4_dir_entry_2 file types. */
export const DIR_FILE_TYPE = { file: 1, directory: 2, char: 3, block: 4, fifo: 5, symlink: 7 } as const;

export interface DirectoryChild {
  readonly name: Buffer;
  readonly ino: number;
  readonly fileType: number;
}

export interface DirectoryBlocks {
  /** The directory's blocks in logical order. */
  readonly blocks: Buffer[];
  /** Whether block 0 is an htree root (the inode then has EXT4_INDEX_FL). */
  readonly indexed: boolean;
}

const TAIL = 12;
const PAYLOAD = DIR_BLOCK_PAYLOAD;
/** "." and ".." at the start of a directory's first block. */
const DOTS = 24;
const DX_ROOT_COUNT_AT = 32;
const DX_NODE_COUNT_AT = 8;
/** Index entries in the root and in a node, with the 8-byte checksum tail after them (geometry.ts). */
const DX_ROOT_LIMIT = HTREE_ROOT_ENTRIES;
const DX_NODE_LIMIT = HTREE_NODE_ENTRIES;
/** dx_root_info.hash_version: half-MD4 (its unsigned form, which the superblock's flag selects). */
const DX_HASH_HALF_MD4 = 1;

/** Bytes an entry for a name of `nameLength` bytes takes. */
export function direntBytes(nameLength: number): number {
  return 8 + ((nameLength + 3) & ~3);
}

/**
 * Lays out directory `ino` (in `parent`) with `children` in the caller's
 * order. `seed` is the directory inode's checksum seed, `hashSeed` the
 * superblock's s_hash_seed as four words.
 */
export function directoryBlocks(ino: number, parent: number, children: readonly DirectoryChild[], seed: number, hashSeed: Uint32Array): DirectoryBlocks {
  let bytes = DOTS;
  for (const c of children) bytes += direntBytes(c.name.length);
  if (bytes <= PAYLOAD) return { blocks: linearBlocks(ino, parent, children, seed), indexed: false };
  const indexed = htreeBlocks(ino, parent, children, seed, hashSeed);
  // Only an unbounded run of names with one hash (beyond a whole block) or
  // more names than two index levels reach (over 250,000 blocks) cannot be
  // indexed; plain blocks hold any directory, read in full on each lookup.
  return indexed ? { blocks: indexed, indexed: true } : { blocks: linearBlocks(ino, parent, children, seed), indexed: false };
}

/** Plain blocks, filled in order: a directory that fits one block, or the unindexed form of one of any size. */
function linearBlocks(ino: number, parent: number, children: readonly DirectoryChild[], seed: number): Buffer[] {
  const blocks: Buffer[] = [];
  let block = Buffer.alloc(EXT4_BLOCK_SIZE);
  let at = writeDots(block, ino, parent);
  let last = 12;
  for (const c of children) {
    if (at + direntBytes(c.name.length) > PAYLOAD) {
      finishLeaf(block, last, seed);
      blocks.push(block);
      block = Buffer.alloc(EXT4_BLOCK_SIZE);
      at = 0;
    }
    last = at;
    at = writeEntry(block, at, c);
  }
  finishLeaf(block, last, seed);
  blocks.push(block);
  return blocks;
}

/**
 * An htree: block 0 the root (".", ".." and the index), then the leaves,
 * then (for more leaves than the root indexes) one level of index nodes.
 * Leaves are filled to the brim (the directory never changes); names with
 * one hash never straddle two leaves, so each leaf's range in the index is
 * exact. Undefined when the names cannot be indexed (see directoryBlocks).
 */
function htreeBlocks(ino: number, parent: number, children: readonly DirectoryChild[], seed: number, hashSeed: Uint32Array): Buffer[] | undefined {
  const hashed = children.map((c) => ({ c, hash: halfMd4Hash(c.name, hashSeed) }));
  hashed.sort((a, b) => a.hash - b.hash || Buffer.compare(a.c.name, b.c.name));

  // Leaves as [start, end) ranges of `hashed`.
  const leaves: [number, number][] = [];
  let start = 0;
  let used = 0;
  for (let i = 0; i < hashed.length; i++) {
    const size = direntBytes((hashed[i] as (typeof hashed)[number]).c.name.length);
    if (used + size > PAYLOAD) {
      // Move the run of names sharing the boundary's hash to the next leaf.
      let cut = i;
      while (cut > start && hashed[cut - 1]?.hash === hashed[i]?.hash) cut--;
      if (cut === start) return undefined;
      leaves.push([start, cut]);
      start = cut;
      used = 0;
      for (let j = cut; j < i; j++) used += direntBytes((hashed[j] as (typeof hashed)[number]).c.name.length);
      if (used + size > PAYLOAD) return undefined;
    }
    used += size;
  }
  leaves.push([start, hashed.length]);

  const minHash = (leaf: number): number => (hashed[(leaves[leaf] as [number, number])[0]] as (typeof hashed)[number]).hash;
  const blocks: Buffer[] = [Buffer.alloc(EXT4_BLOCK_SIZE)];
  for (const [from, to] of leaves) {
    const leaf = Buffer.alloc(EXT4_BLOCK_SIZE);
    let at = 0;
    let last = 0;
    for (let j = from; j < to; j++) {
      last = at;
      at = writeEntry(leaf, at, (hashed[j] as (typeof hashed)[number]).c);
    }
    finishLeaf(leaf, last, seed);
    blocks.push(leaf);
  }

  const root = blocks[0] as Buffer;
  writeDots(root, ino, parent);
  // ".." spans the rest of the block: the index lives in its slack.
  root.writeUInt16LE(EXT4_BLOCK_SIZE - 12, 12 + 4);
  root.writeUInt32LE(0, 24); // reserved_zero
  root[28] = DX_HASH_HALF_MD4;
  root[29] = 8; // info_length
  root[31] = 0; // unused_flags

  if (leaves.length <= DX_ROOT_LIMIT) {
    root[30] = 0; // indirect_levels
    writeIndex(root, DX_ROOT_COUNT_AT, DX_ROOT_LIMIT, leaves.map((_, n) => ({ hash: minHash(n), block: 1 + n })), seed);
    return blocks;
  }
  const nodes = Math.ceil(leaves.length / DX_NODE_LIMIT);
  if (nodes > DX_ROOT_LIMIT) return undefined;
  root[30] = 1;
  const nodeEntries: { hash: number; block: number }[] = [];
  for (let n = 0; n < nodes; n++) {
    const first = n * DX_NODE_LIMIT;
    const node = Buffer.alloc(EXT4_BLOCK_SIZE);
    // An empty entry spanning the block, so a plain reader skips it.
    node.writeUInt16LE(EXT4_BLOCK_SIZE, 4);
    const span = leaves.slice(first, first + DX_NODE_LIMIT).map((_, k) => ({ hash: minHash(first + k), block: 1 + first + k }));
    writeIndex(node, DX_NODE_COUNT_AT, DX_NODE_LIMIT, span, seed);
    nodeEntries.push({ hash: minHash(first), block: blocks.length });
    blocks.push(node);
  }
  writeIndex(root, DX_ROOT_COUNT_AT, DX_ROOT_LIMIT, nodeEntries, seed);
  return blocks;
}

/**
 * An index (root or node): limit and count over the first entry's hash slot,
 * the first block (for hashes below the second entry's), then (hash, block)
 * pairs, and the tail's checksum over the used part and the tail with
 * its checksum field still zero (ext4_dx_csum).
 */
function writeIndex(block: Buffer, countAt: number, limit: number, entries: readonly { hash: number; block: number }[], seed: number): void {
  block.writeUInt16LE(limit, countAt);
  block.writeUInt16LE(entries.length, countAt + 2);
  entries.forEach((e, n) => {
    if (n > 0) block.writeUInt32LE(e.hash, countAt + n * 8);
    block.writeUInt32LE(e.block, countAt + n * 8 + 4);
  });
  const tailAt = countAt + limit * 8;
  const crc = ext4Crc(ext4Crc(seed, block.subarray(0, countAt + entries.length * 8)), block.subarray(tailAt, tailAt + 8));
  block.writeUInt32LE(crc, tailAt + 4);
}

/** "." and ".." at the start of a block; returns where the next entry goes. */
function writeDots(block: Buffer, ino: number, parent: number): number {
  writeRaw(block, 0, ino, 12, Buffer.from("."), DIR_FILE_TYPE.directory);
  writeRaw(block, 12, parent, 12, Buffer.from(".."), DIR_FILE_TYPE.directory);
  return DOTS;
}

function writeEntry(block: Buffer, at: number, c: DirectoryChild): number {
  const size = direntBytes(c.name.length);
  writeRaw(block, at, c.ino, size, c.name, c.fileType);
  return at + size;
}

function writeRaw(block: Buffer, at: number, ino: number, recLen: number, name: Buffer, fileType: number): void {
  block.writeUInt32LE(ino, at);
  block.writeUInt16LE(recLen, at + 4);
  block[at + 6] = name.length;
  block[at + 7] = fileType;
  name.copy(block, at + 8);
}

/** Stretches the last entry (at `last`) to the tail and writes the tail with the block's checksum. */
function finishLeaf(block: Buffer, last: number, seed: number): void {
  block.writeUInt16LE(PAYLOAD - last, last + 4);
  block.writeUInt32LE(0, PAYLOAD);
  block.writeUInt16LE(TAIL, PAYLOAD + 4);
  block[PAYLOAD + 6] = 0;
  block[PAYLOAD + 7] = 0xde;
  block.writeUInt32LE(ext4Crc(seed, block.subarray(0, PAYLOAD)), PAYLOAD + 8);
}
