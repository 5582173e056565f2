import { open } from "node:fs/promises";
import { VERITY_BLOCK } from "./params.js";
import { readVeritySuperblock } from "./superblock.js";

/** The filesystems a verity hash tree is appended to. */
export type VerityImageKind = "erofs" | "squashfs" | "ext4";

/**
 * Where an image's own filesystem ends, in bytes, from its superblock: the
 * hash tree, when there is one, starts at the next 4 KiB boundary. Each
 * filesystem records its size, so no side file is needed to find the tree.
 */
export async function filesystemBytes(path: string, kind: VerityImageKind): Promise<number> {
  const file = await open(path, "r");
  try {
    const sb = Buffer.alloc(2048);
    await file.read(sb, 0, sb.length, 0);
    switch (kind) {
      case "erofs": {
        // struct erofs_super_block at 1024: blkszbits (u8) at +12, blocks (u32) at +36.
        return sb.readUInt32LE(1024 + 36) * 2 ** sb.readUInt8(1024 + 12);
      }
      case "squashfs": {
        // struct squashfs_super_block at 0: bytes_used (u64) at +40; mksquashfs pads the file to 4 KiB.
        return Number(sb.readBigUInt64LE(40));
      }
      case "ext4": {
        // struct ext4_super_block at 1024: s_blocks_count_lo at +4, s_log_block_size at +24,
        // s_feature_incompat at +96 (INCOMPAT_64BIT 0x80), s_blocks_count_hi at +336.
        const lo = sb.readUInt32LE(1024 + 4);
        const is64 = (sb.readUInt32LE(1024 + 96) & 0x80) !== 0;
        const hi = is64 ? sb.readUInt32LE(1024 + 336) : 0;
        return (hi * 2 ** 32 + lo) * (1024 << sb.readUInt32LE(1024 + 24));
      }
    }
  } finally {
    await file.close();
  }
}

/**
 * The appended verity superblock of an image, or null when there is none
 * where it should be: at `knownOffset` (from the build's record, which a
 * change to the image's own size fields cannot move), else right after the
 * filesystem its superblock describes.
 */
export async function findVerityTree(
  path: string,
  kind: VerityImageKind,
  knownOffset?: number,
): Promise<{ dataBlocks: number; salt: string; algorithm: string; hashOffset: number } | null> {
  const hashOffset = knownOffset ?? Math.ceil((await filesystemBytes(path, kind)) / VERITY_BLOCK) * VERITY_BLOCK;
  const sb = await readVeritySuperblock(path, hashOffset);
  // A superblock whose data does not end where it sits is not the one this image was built with.
  return sb && sb.dataBlocks * VERITY_BLOCK === hashOffset ? sb : null;
}
