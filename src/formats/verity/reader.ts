import { open } from "node:fs/promises";
import { buildUpperLevels, hashDataBlocks } from "./hash-tree.js";
import { VERITY_BLOCK, type VerityInfo } from "./params.js";

/**
 * Recomputes the root hash of the first `dataBlocks` blocks of `path` and
 * compares it and every stored hash block with what the image carries. Returns
 * the first mismatch, or null when the image is intact.
 */
export async function verifyVerityTree(path: string, info: Pick<VerityInfo, "rootHash" | "salt" | "hashOffset" | "dataBlocks">, signal?: AbortSignal): Promise<string | null> {
  const file = await open(path, "r");
  try {
    const salt = Buffer.from(info.salt, "hex");
    const level0 = await hashDataBlocks(file, info.dataBlocks, salt, signal);
    const { levels, rootHash } = buildUpperLevels(level0, salt);
    if (rootHash.toString("hex") !== info.rootHash.toLowerCase()) {
      return `the data's root hash is ${rootHash.toString("hex")}, not ${info.rootHash}`;
    }
    let at = info.hashOffset + VERITY_BLOCK;
    for (const [i, level] of [...levels].reverse().entries()) {
      const stored = Buffer.alloc(level.length);
      const { bytesRead } = await file.read(stored, 0, stored.length, at);
      if (bytesRead !== stored.length || !stored.equals(level)) {
        return `hash level ${levels.length - 1 - i} at byte ${at} differs from the data (the stored hash tree is damaged)`;
      }
      at += level.length;
    }
    return null;
  } finally {
    await file.close();
  }
}

