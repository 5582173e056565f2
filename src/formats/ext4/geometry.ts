/**
 * The shape of the ext4 images this project writes, shared by the size
 * estimate (image-size.ts) and the writer (image-plan.ts and the block
 * encoders), so the two cannot disagree.
 */

export const EXT4_BLOCK_SIZE = 4096;
export const EXT4_INODE_SIZE = 256;
/** Blocks per block group (one bitmap block covers 32768 blocks). */
export const BLOCKS_PER_GROUP = 32768;
/** Inodes one group can have: one bitmap block's bits. */
export const MAX_INODES_PER_GROUP = EXT4_BLOCK_SIZE * 8;
/** Inodes reserved by ext4 below the first usable one (s_first_ino = 11). */
export const RESERVED_INODES = 10;
/** The longest run of blocks one (initialized) extent maps. */
export const MAX_EXTENT_BLOCKS = 32768;
/** Extents that fit in the inode itself; more need extent-tree blocks. */
export const INODE_EXTENTS = 4;
/** Extent entries in one extent-tree block: (4096 - 12 header - 4 checksum) / 12. */
export const EXTENTS_PER_BLOCK = 340;
/** Symlink targets up to this long live inside the inode ("fast" symlinks). */
export const FAST_SYMLINK_MAX = 59;
/** Bytes of entries a directory block holds before its 12-byte checksum tail. */
export const DIR_BLOCK_PAYLOAD = EXT4_BLOCK_SIZE - 12;
/** Leaves the htree root block indexes: (4096 - 32 header - 8 checksum tail) / 8. */
export const HTREE_ROOT_ENTRIES = 507;
/** Leaves one interior htree block indexes: (4096 - 8 header - 8 checksum tail) / 8. */
export const HTREE_NODE_ENTRIES = 510;
/** The extra inode fields past the 128-byte base, up to and including i_projid. */
export const EXTRA_ISIZE = 32;
/**
 * In-inode xattr space: the inode less its 128-byte base, its extra fields
 * and the 4-byte magic, for the entries, their 4-byte end marker and the
 * values. Bigger xattr sets go to one external block.
 */
export const INODE_XATTR_SPACE = EXT4_INODE_SIZE - 128 - EXTRA_ISIZE - 4;
