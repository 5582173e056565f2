/** "hsqs": the squashfs superblock's s_magic, little-endian at byte 0. */
const SQUASHFS_MAGIC = 0x73717368;

/** Whether the bytes start a squashfs image. */
export function isSquashfsImage(head: Buffer): boolean {
  return head.length >= 4 && head.readUInt32LE(0) === SQUASHFS_MAGIC;
}

/** What is missing when a file named like a squashfs image is not one (for `unrecognisedFormat`). */
export const SQUASHFS_MAGIC_MISSING = 'the squashfs magic "hsqs" is missing at byte 0';
