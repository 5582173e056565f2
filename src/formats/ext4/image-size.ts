import { contentSize, type Inode, type RootfsTree, type TreeEntry } from "../../tree/index.js";
import {
  BLOCKS_PER_GROUP,
  DIR_BLOCK_PAYLOAD,
  EXT4_BLOCK_SIZE,
  EXT4_INODE_SIZE,
  EXTENTS_PER_BLOCK,
  FAST_SYMLINK_MAX,
  HTREE_NODE_ENTRIES,
  HTREE_ROOT_ENTRIES,
  INODE_EXTENTS,
  INODE_XATTR_SPACE,
  MAX_EXTENT_BLOCKS,
  MAX_INODES_PER_GROUP,
  RESERVED_INODES,
} from "./geometry.js";
import { xattrRegionBytes } from "./xattr-encoding.js";

/**
 * The fewest entry bytes in an htree leaf: the writer fills leaves to the
 * brim, but a leaf closes early when the next name would not fit, and names
 * with one hash never straddle two leaves (directory-blocks.ts); 80 % of the
 * payload bounds both with room to spare.
 */
const HTREE_LEAF_BYTES = DIR_BLOCK_PAYLOAD - Math.floor((DIR_BLOCK_PAYLOAD * 20) / 100);
/** lost+found: one directory block. */
const LOST_FOUND_BLOCKS = 1;

/** Relative headroom on top of everything counted. */
export const EXT4_HEADROOM = 0.1;
/** Fixed slack for what the count cannot see (allocator alignment, flex_bg placement). */
export const EXT4_SLACK_BLOCKS = 64;
/** The smallest image written, whatever the tree. */
export const EXT4_MIN_BLOCKS = 256;
/** Spare inodes beyond the ones the tree needs. */
const INODE_HEADROOM = 0.1;
const MIN_SPARE_INODES = 16;

export interface Ext4Size {
  /** Filesystem size in 4 KiB blocks. */
  readonly blocks: number;
  /** Inodes the image needs at least (image-plan.ts rounds up to whole inode-table blocks per group). */
  readonly inodes: number;
  readonly bytes: number;
  /** How the blocks were counted, for reports and tests. */
  readonly breakdown: {
    readonly data: number;
    readonly extentTree: number;
    readonly directories: number;
    readonly symlinks: number;
    readonly xattrBlocks: number;
    readonly inodeTables: number;
    readonly groupMetadata: number;
  };
}

/**
 * The size of an ext4 image for a tree, counted from its content, never a
 * fixed number.
 *
 *   data       = Σ over distinct regular-file inodes of ceil(size / 4096)
 *   extentTree = Σ ceil(extents / 340) for files with more than 4 extents,
 *                extents = ceil(blocks / 32768)
 *   directories= Σ over directories, bytes = 24 ("." and "..") + Σ children
 *                (8 + name length rounded up to 4): 1 block when bytes ≤ 4084;
 *                else an htree (directory-blocks.ts): a root block, leaves of
 *                at least 3268 entry bytes each (ceil((bytes - 24) / 3268)),
 *                and one interior block per 510 leaves beyond the root's 507
 *   symlinks   = one block per target of 60 bytes or more
 *   xattrBlocks= one block per inode whose xattrs do not fit the 92 in-inode bytes
 *                (xattrRegionBytes: 4 for the end marker, and each xattr: 16 +
 *                name without its namespace prefix rounded to 4 + value rounded to 4)
 *   inodes     = (distinct inodes + 10 reserved + lost+found) × 1.1, at least +16
 *   inodeTables= groups × ceil(inodes per group × 256 / 4096)
 *   groupMeta  = 2 bitmap blocks per group + the superblock and descriptors
 *                (group 0 only: the image has no backup copies, image-plan.ts)
 *   total      = (all of the above + 1 for lost+found) × 1.10 + 64, at least 256,
 *                and enough groups that none has more than 32768 inodes
 *
 * There is no journal (see writer.ts), so nothing is counted for one. The
 * headroom covers what the count cannot see; the image's free space is
 * reported by the tests, not assumed.
 */
export function ext4ImageSize(tree: RootfsTree, entries: readonly TreeEntry[] = tree.entries()): Ext4Size {
  let data = 0;
  let extentTree = 0;
  let directories = 0;
  let symlinks = 0;
  let xattrBlocks = 0;
  let distinctInodes = 0;
  const seen = new Set<Inode>();

  for (const e of entries) {
    const inode = e.inode;
    if (seen.has(inode)) continue;
    seen.add(inode);
    distinctInodes++;
    if (xattrRegionBytes(inode.xattrs) > INODE_XATTR_SPACE) xattrBlocks++;
    switch (inode.kind) {
      case "file": {
        const blocks = Math.ceil(contentSize(inode.content) / EXT4_BLOCK_SIZE);
        data += blocks;
        const extents = Math.ceil(blocks / MAX_EXTENT_BLOCKS);
        if (extents > INODE_EXTENTS) extentTree += Math.ceil(extents / EXTENTS_PER_BLOCK);
        break;
      }
      case "directory": {
        let bytes = 24;
        for (const name of inode.children.keys()) bytes += 8 + roundUp(Buffer.byteLength(name), 4);
        directories += directoryBlocks(bytes);
        break;
      }
      case "symlink":
        if (Buffer.byteLength(inode.target) > FAST_SYMLINK_MAX) symlinks++;
        break;
      default:
        break;
    }
  }

  const inodes = Math.ceil(
    Math.max((distinctInodes + RESERVED_INODES + 1) * (1 + INODE_HEADROOM), distinctInodes + RESERVED_INODES + 1 + MIN_SPARE_INODES),
  );
  const content = data + extentTree + directories + symlinks + xattrBlocks + LOST_FOUND_BLOCKS;

  // Group count depends on the total and the metadata on the group count:
  // iterate to a fixed point (it settles in two or three rounds).
  let blocks = Math.max(EXT4_MIN_BLOCKS, content);
  let inodeTables = 0;
  let groupMetadata = 0;
  for (let round = 0; round < 8; round++) {
    const groups = Math.max(1, Math.ceil(blocks / BLOCKS_PER_GROUP), Math.ceil(inodes / MAX_INODES_PER_GROUP));
    const inodesPerGroup = roundUp(Math.ceil(inodes / groups), EXT4_BLOCK_SIZE / EXT4_INODE_SIZE);
    inodeTables = groups * Math.ceil((inodesPerGroup * EXT4_INODE_SIZE) / EXT4_BLOCK_SIZE);
    const descriptorBlocks = Math.ceil((groups * 32) / EXT4_BLOCK_SIZE);
    groupMetadata = 2 * groups + 1 + descriptorBlocks;
    const next = Math.max(
      EXT4_MIN_BLOCKS,
      Math.ceil((content + inodeTables + groupMetadata) * (1 + EXT4_HEADROOM)) + EXT4_SLACK_BLOCKS,
      // More groups for the inodes than for the blocks: the last one gets a
      // few blocks of its own (a group of a block or two is legal, but small).
      (groups - 1) * BLOCKS_PER_GROUP + EXT4_MIN_BLOCKS,
    );
    if (next === blocks) break;
    blocks = next;
  }
  return {
    blocks,
    inodes,
    bytes: blocks * EXT4_BLOCK_SIZE,
    breakdown: { data, extentTree, directories, symlinks, xattrBlocks, inodeTables, groupMetadata },
  };
}

/**
 * Blocks of a directory whose entries take `bytes`, as e2fsck -D leaves it:
 * one block fits whole; more are an htree. An upper bound for the htree
 * (each leaf but the last holds at least HTREE_LEAF_BYTES), exact for one block.
 */
function directoryBlocks(bytes: number): number {
  if (bytes <= DIR_BLOCK_PAYLOAD) return 1;
  const leaves = Math.ceil((bytes - 24) / HTREE_LEAF_BYTES);
  const interior = leaves > HTREE_ROOT_ENTRIES ? Math.ceil(leaves / HTREE_NODE_ENTRIES) : 0;
  return 1 + leaves + interior;
}

function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}
