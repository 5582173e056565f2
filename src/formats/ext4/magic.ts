/** Where the superblock's s_magic lies: the superblock starts at byte 1024, the magic 56 bytes into it. */
const EXT4_MAGIC_OFFSET = 1024 + 56;
/** 0xEF53, shared by ext2, ext3 and ext4. */
const EXT4_MAGIC = 0xef53;

/** Whether the bytes (at least 1082 of them) start an ext2/3/4 filesystem. */
export function isExt4Image(head: Buffer): boolean {
  return head.length >= EXT4_MAGIC_OFFSET + 2 && head.readUInt16LE(EXT4_MAGIC_OFFSET) === EXT4_MAGIC;
}

/** What is missing when a file named like an ext4 image is not one (for `unrecognisedFormat`). */
export const EXT4_MAGIC_MISSING = `the ext2/3/4 superblock magic (0xEF53) is missing at byte ${EXT4_MAGIC_OFFSET}`;
