import { createHash } from "node:crypto";
import { A3sError } from "../../errors.js";

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

/** The kernel's dm-verity table line for an image whose hash tree is appended. */
export function verityTable(info: Pick<VerityInfo, "rootHash" | "salt" | "hashOffset" | "dataBlocks">, device: string): string {
  const sectors = (info.dataBlocks * VERITY_BLOCK) / 512;
  const hashStartBlock = info.hashOffset / VERITY_BLOCK + 1;
  return [
    0, sectors, "verity", 1, device, device, VERITY_BLOCK, VERITY_BLOCK, info.dataBlocks, hashStartBlock,
    "sha256", info.rootHash, info.salt === "" ? "-" : info.salt,
  ].join(" ");
}

