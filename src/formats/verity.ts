import { createHash } from "node:crypto";
import { open, type FileHandle } from "node:fs/promises";
import { A3sError } from "../errors.js";

/**
 * dm-verity, format 1, as the Linux kernel's dm-verity target and cryptsetup's
 * veritysetup define it: sha256, 4 KiB data and hash blocks.
 *
 * The hash tree is appended to the image it covers, after the image padded
 * to a 4 KiB boundary:
 *
 *   [ data blocks 0..N-1 | verity superblock (one 4 KiB block) | hash levels, top first ]
 *   0                    hashOffset                             hashOffset + 4096
 *
 * Why appended rather than a separate PATH.verity file: the image stays one
 * file, so publishing it (rename), caching it, pushing it to a registry and
 * attaching it to the VM (one read-only virtio-blk disk) all stay one step,
 * and the hash tree can never be paired with the wrong image. Filesystems
 * ignore bytes past their own end (ext4's block count, erofs's block count,
 * squashfs's bytes_used), so the image mounts the same with or without it.
 *
 * The superblock is veritysetup's on-disk header, so `veritysetup verify
 * IMAGE IMAGE ROOT --hash-offset=hashOffset` and `veritysetup open` read the
 * parameters from it. The kernel does not read it: its table names the hash
 * start block (hashOffset / 4096 + 1) itself.
 */

export const VERITY_BLOCK = 4096;
/**
 * sha256's digest size. Format 1 stores each digest padded to a power of
 * two; 32 already is one, so a hash block holds 4096 / 32 = 128 digests.
 */
const DIGEST = 32;
const SUPERBLOCK_MAGIC = Buffer.from("verity\0\0", "latin1");
const SUPERBLOCK_BYTES = 512;
/** How much of the image is read per system call. */
const READ_CHUNK = 1 << 20;

export interface VerityInfo {
  /** The digest the kernel checks the top hash block against; hex. */
  readonly rootHash: string;
  /** Hex; 32 bytes unless the caller chose another salt. */
  readonly salt: string;
  /** Byte offset of the verity superblock; the data is the image's first `dataBlocks` blocks. */
  readonly hashOffset: number;
  readonly dataBlocks: number;
  readonly algorithm: "sha256";
  /** The file that holds the hash tree: the image itself. */
  readonly hashPath: string;
}

/**
 * The salt a build uses when the caller gives none: derived from what the
 * image is (the caller's content identity, e.g. the build's input digest),
 * so one build gives one root hash, and two different images get different
 * salts as dm-verity intends.
 */
export function deriveVeritySalt(contentIdentity: string): Buffer {
  return createHash("sha256").update("a3s-rootfs verity salt v1\0").update(contentIdentity).digest();
}

/** Parses a salt given as hex (`--verity-salt`); "-" means none, as in veritysetup. */
export function parseVeritySalt(text: string): Buffer {
  if (text === "-") return Buffer.alloc(0);
  if (!/^([0-9a-fA-F]{2}){1,256}$/.test(text)) {
    throw new A3sError("EUSAGE", `invalid verity salt ${JSON.stringify(text)}: expected 1 to 256 bytes of hex, or "-" for none`, {
      subject: text,
    });
  }
  return Buffer.from(text, "hex");
}

/**
 * Pads `path` to a whole number of 4 KiB blocks, appends the superblock and
 * hash tree, and returns where they are. The image is read once, front to
 * back; the level-0 hashes (32 bytes per 4 KiB, under 1 % of the image) are
 * held in memory and the levels above are computed from them.
 */
export async function appendVerityTree(
  path: string,
  salt: Buffer,
  opts: { readonly signal?: AbortSignal; readonly uuid?: string } = {},
): Promise<VerityInfo> {
  const file = await open(path, "r+");
  try {
    const size = (await file.stat()).size;
    if (size === 0) throw new A3sError("EVERITY", `${path}: an empty image cannot carry a verity hash tree`, { subject: path });
    const dataBlocks = Math.ceil(size / VERITY_BLOCK);
    const hashOffset = dataBlocks * VERITY_BLOCK;
    if (hashOffset > size) await file.truncate(hashOffset);

    const level0 = await hashDataBlocks(file, dataBlocks, salt, opts.signal);
    const { levels, rootHash } = buildUpperLevels(level0, salt);
    const superblock = veritySuperblock({ dataBlocks, salt, uuid: opts.uuid ?? uuidFromSalt(salt, dataBlocks) });

    let at = hashOffset;
    await file.write(superblock, 0, superblock.length, at);
    at += VERITY_BLOCK;
    // Top level first: veritysetup and the kernel place level L-1 at the hash
    // start and level 0 (one hash per data block) last.
    for (const level of [...levels].reverse()) {
      await file.write(level, 0, level.length, at);
      at += level.length;
    }
    await file.truncate(at);
    await file.sync();
    return { rootHash: rootHash.toString("hex"), salt: salt.toString("hex"), hashOffset, dataBlocks, algorithm: "sha256", hashPath: path };
  } finally {
    await file.close();
  }
}

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

/** The kernel's dm-verity table line for an image whose hash tree is appended. */
export function verityTable(info: Pick<VerityInfo, "rootHash" | "salt" | "hashOffset" | "dataBlocks">, device: string): string {
  const sectors = (info.dataBlocks * VERITY_BLOCK) / 512;
  const hashStartBlock = info.hashOffset / VERITY_BLOCK + 1;
  return [
    0, sectors, "verity", 1, device, device, VERITY_BLOCK, VERITY_BLOCK, info.dataBlocks, hashStartBlock,
    "sha256", info.rootHash, info.salt === "" ? "-" : info.salt,
  ].join(" ");
}

async function hashDataBlocks(file: FileHandle, dataBlocks: number, salt: Buffer, signal?: AbortSignal): Promise<Buffer> {
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
function buildUpperLevels(level0: Buffer, salt: Buffer): { levels: Buffer[]; rootHash: Buffer } {
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

/** veritysetup's superblock (struct verity_sb), little-endian, in a zeroed 4 KiB block. */
function veritySuperblock(p: { dataBlocks: number; salt: Buffer; uuid: string }): Buffer {
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
function uuidFromSalt(salt: Buffer, dataBlocks: number): string {
  const h = createHash("sha256").update("a3s-rootfs verity uuid\0").update(salt).update(String(dataBlocks)).digest();
  h[6] = (h[6]! & 0x0f) | 0x40;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}
