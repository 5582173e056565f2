import crc32c from "crc-32/crc32c.js";

/**
 * ext4's metadata checksum: CRC-32C as the kernel's `crc32c_le` computes it,
 * with no inversion before or after, so a checksum can continue from any
 * earlier one (ext4 seeds every checksum with that of the filesystem UUID,
 * then the inode number, and so on). The library computes the standard
 * form, which inverts on the way in and out; inverting around it gives the
 * raw one.
 */
export function ext4Crc(seed: number, data: Uint8Array): number {
  return ~crc32c.buf(data, ~seed) >>> 0;
}

/** Scratch for ext4CrcU32 (one per inode and more: not a new buffer each time). */
const u32 = Buffer.alloc(4);

/** The raw CRC-32C of a little-endian 32-bit number, continued from `seed`. */
export function ext4CrcU32(seed: number, value: number): number {
  u32.writeUInt32LE(value >>> 0, 0);
  return ext4Crc(seed, u32);
}

/** The seed every metadata checksum starts from: the UUID's checksum (no csum_seed feature). */
export function filesystemSeed(uuid: Uint8Array): number {
  return ext4Crc(0xffffffff, uuid);
}

/** An inode's own seed, for its inode, directory, extent-tree and htree checksums: (ino, generation 0) after the filesystem's. */
export function inodeSeed(fsSeed: number, ino: number): number {
  return ext4CrcU32(ext4CrcU32(fsSeed, ino), 0);
}
