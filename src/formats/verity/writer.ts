import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { A3sError } from "../../errors.js";
import { buildUpperLevels, hashDataBlocks } from "./hash-tree.js";
import { VERITY_BLOCK, type VerityInfo } from "./params.js";
import { uuidFromSalt, veritySuperblock } from "./superblock.js";

/**
 * Pads `path` to a whole number of 4 KiB blocks, appends the superblock and
 * hash tree, and returns where they are, with the SHA-256 of the whole
 * resulting file. The image is read once, front to back; the level-0 hashes
 * (32 bytes per 4 KiB, under 1 % of the image) are held in memory and the
 * levels above are computed from them.
 */
export async function appendVerityTree(
  path: string,
  salt: Buffer,
  opts: { readonly signal?: AbortSignal; readonly uuid?: string } = {},
): Promise<VerityInfo & { readonly fileSha256: string }> {
  const file = await open(path, "r+");
  try {
    const size = (await file.stat()).size;
    if (size === 0) throw new A3sError("EVERITY", `${path}: an empty image cannot carry a verity hash tree`, { subject: path });
    const dataBlocks = Math.ceil(size / VERITY_BLOCK);
    const hashOffset = dataBlocks * VERITY_BLOCK;
    if (hashOffset > size) await file.truncate(hashOffset);

    const whole = createHash("sha256");
    const level0 = await hashDataBlocks(file, dataBlocks, salt, opts.signal, whole);
    const { levels, rootHash } = buildUpperLevels(level0, salt);
    const superblock = veritySuperblock({ dataBlocks, salt, uuid: opts.uuid ?? uuidFromSalt(salt, dataBlocks) });

    let at = hashOffset;
    await file.write(superblock, 0, superblock.length, at);
    whole.update(superblock);
    at += VERITY_BLOCK;
    // Top level first: veritysetup and the kernel place level L-1 at the hash
    // start and level 0 (one hash per data block) last.
    for (const level of [...levels].reverse()) {
      await file.write(level, 0, level.length, at);
      whole.update(level);
      at += level.length;
    }
    await file.truncate(at);
    await file.sync();
    const info = { rootHash: rootHash.toString("hex"), salt: salt.toString("hex"), hashOffset, dataBlocks, algorithm: "sha256" as const };
    return { ...info, hashPath: path, fileSha256: whole.digest("hex") };
  } finally {
    await file.close();
  }
}

