import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { A3sError } from "../../errors.js";
import { VERITY_BLOCK } from "./params.js";

/** veritysetup's on-disk header (struct verity_sb in cryptsetup's lib/verity/verity.c): 512 bytes at the hash offset. */
const SUPERBLOCK_MAGIC = Buffer.from("verity\0\0", "latin1");
const SUPERBLOCK_BYTES = 512;

/** The verity superblock at `offset`, or null when there is none there. */
export async function readVeritySuperblock(
  path: string,
  offset: number,
): Promise<{ dataBlocks: number; salt: string; algorithm: string; hashOffset: number } | null> {
  const file = await open(path, "r");
  try {
    const b = Buffer.alloc(SUPERBLOCK_BYTES);
    const { bytesRead } = await file.read(b, 0, b.length, offset);
    if (bytesRead < b.length || !b.subarray(0, 8).equals(SUPERBLOCK_MAGIC)) return null;
    const saltSize = b.readUInt16LE(80);
    return {
      dataBlocks: Number(b.readBigUInt64LE(72)),
      salt: b.subarray(88, 88 + Math.min(saltSize, 256)).toString("hex"),
      algorithm: b.subarray(32, 64).toString("latin1").replace(/\0.*$/s, ""),
      hashOffset: offset,
    };
  } finally {
    await file.close();
  }
}

/** veritysetup's superblock (struct verity_sb), little-endian, in a zeroed 4 KiB block. */
export function veritySuperblock(p: { dataBlocks: number; salt: Buffer; uuid: string }): Buffer {
  if (p.salt.length > 256) throw new A3sError("EUSAGE", `a verity salt is at most 256 bytes, not ${p.salt.length}`);
  const b = Buffer.alloc(VERITY_BLOCK);
  SUPERBLOCK_MAGIC.copy(b, 0);
  b.writeUInt32LE(1, 8); // superblock version
  b.writeUInt32LE(1, 12); // hash type: format 1
  Buffer.from(p.uuid.replace(/-/g, ""), "hex").copy(b, 16);
  b.write("sha256", 32, "latin1");
  b.writeUInt32LE(VERITY_BLOCK, 64);
  b.writeUInt32LE(VERITY_BLOCK, 68);
  b.writeBigUInt64LE(BigInt(p.dataBlocks), 72);
  b.writeUInt16LE(p.salt.length, 80);
  p.salt.copy(b, 88);
  return b;
}

/** A UUID for the superblock that is a function of the salt and size, so the bytes are reproducible. */
export function uuidFromSalt(salt: Buffer, dataBlocks: number): string {
  const h = createHash("sha256").update("a3s-rootfs verity uuid\0").update(salt).update(String(dataBlocks)).digest();
  h[6] = (h[6]! & 0x0f) | 0x40;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}
