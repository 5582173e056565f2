/** The erofs superblock starts 1024 bytes into the image, with its magic (erofs_fs.h EROFS_SUPER_MAGIC_V1). */
export const EROFS_SUPERBLOCK_OFFSET = 1024;
export const EROFS_MAGIC = 0xe0f5e1e2;

/** Whether the bytes (at least 1028 of them) start an erofs image. */
export function isErofsImage(head: Buffer): boolean {
  return head.length >= EROFS_SUPERBLOCK_OFFSET + 4 && head.readUInt32LE(EROFS_SUPERBLOCK_OFFSET) === EROFS_MAGIC;
}

/** What is missing when a file named like an erofs image is not one (for `unrecognisedFormat`). */
export const EROFS_MAGIC_MISSING = `the erofs superblock magic is missing at byte ${EROFS_SUPERBLOCK_OFFSET}`;
