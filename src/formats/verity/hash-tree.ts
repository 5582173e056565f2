import { createHash, type Hash } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import { VERITY_BLOCK } from "./params.js";

/**
 * sha256's digest size. Format 1 stores each digest padded to a power of
 * two; 32 already is one, so a hash block holds 4096 / 32 = 128 digests.
 */
export const DIGEST = 32;
/** How much of the image is read per system call. */
const READ_CHUNK = 1 << 20;

/**
 * The salted hash of every 4 KiB data block of `file`, front to back, in one
 * read; `whole`, when given, also sees every byte read (a digest of the file).
 */
export async function hashDataBlocks(
  file: FileHandle,
  dataBlocks: number,
  salt: Buffer,
  signal?: AbortSignal,
  whole?: Hash,
): Promise<Buffer> {
  const hashes = Buffer.alloc(dataBlocks * DIGEST);
  const chunk = Buffer.alloc(READ_CHUNK);
  let block = 0;
  while (block < dataBlocks) {
    signal?.throwIfAborted();
    const want = Math.min(READ_CHUNK, (dataBlocks - block) * VERITY_BLOCK);
    let got = 0;
    while (got < want) {
      const { bytesRead } = await file.read(chunk, got, want - got, block * VERITY_BLOCK + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    // The last block may be short only if the file is: pad it with zeros, as the kernel's device would read them.
    if (got < want) chunk.fill(0, got, want);
    whole?.update(chunk.subarray(0, want));
    for (let off = 0; off < want; off += VERITY_BLOCK, block++) {
      saltedHash(salt, chunk.subarray(off, off + VERITY_BLOCK)).copy(hashes, block * DIGEST);
    }
  }
  return hashes;
}

/**
 * The hash levels from level 0 upwards, each padded to whole blocks, and the
 * root hash: the hash of the single block at the top.
 */
export function buildUpperLevels(level0: Buffer, salt: Buffer): { levels: Buffer[]; rootHash: Buffer } {
  // One data block: its own hash is the root, and there are no hash blocks
  // (veritysetup's tree has zero levels then, and the kernel accepts that).
  if (level0.length === DIGEST) return { levels: [], rootHash: level0 };
  const levels: Buffer[] = [];
  let below = level0;
  for (;;) {
    const blocks = Math.ceil(below.length / VERITY_BLOCK);
    const level = Buffer.alloc(blocks * VERITY_BLOCK);
    below.copy(level);
    levels.push(level);
    if (blocks === 1) return { levels, rootHash: saltedHash(salt, level) };
    const next = Buffer.alloc(blocks * DIGEST);
    for (let i = 0; i < blocks; i++) {
      saltedHash(salt, level.subarray(i * VERITY_BLOCK, (i + 1) * VERITY_BLOCK)).copy(next, i * DIGEST);
    }
    below = next;
  }
}

/** Format 1 hashes the salt first, then the block (format 0 did the reverse). */
function saltedHash(salt: Buffer, block: Buffer): Buffer {
  return createHash("sha256").update(salt).update(block).digest();
}

