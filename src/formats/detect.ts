import { open } from "node:fs/promises";
import { A3sError } from "../errors.js";
import { basename } from "node:path";
import { COMPRESSION_MAGIC_MISSING, compressionMagic, type Compression, type UnsupportedCompression } from "./compression/index.js";
import { isElf } from "./elf/index.js";
import { EROFS_MAGIC_MISSING, isErofsImage } from "./erofs/index.js";
import { EXT4_MAGIC_MISSING, isExt4Image } from "./ext4/index.js";
import { CPIO_MAGIC_MISSING, cpioMagic } from "./newc/index.js";
import { isSquashfsImage, SQUASHFS_MAGIC_MISSING } from "./squashfs/index.js";
import { hasUstarMagic, isTarHeader, TAR_MAGIC_MISSING } from "./tar/index.js";

/** What a file is, as far as this project reads files. */
export type FileFormat =
  | Compression
  | UnsupportedCompression
  /** A cpio archive the kernel reads (newc or crc). */
  | "newc"
  /** The old portable cpio format, recognised only to be refused. */
  | "odc"
  | "tar"
  | "ext4"
  | "erofs"
  | "squashfs"
  | "elf";

/** Bytes `detectFormat` looks at: enough for every magic number (ext4's ends at byte 1082). */
export const DETECT_HEAD_BYTES = 2048;

/**
 * The one place that tells formats apart, by their magic numbers and never
 * by a file name: each format module defines its own magic, and this
 * function asks them in an order where no answer can hide another.
 * Compressed data and cpio (marked at byte 0) come first, then a ustar
 * header (marked at byte 257: a tar whose first member is named "hsqs..."
 * is still a tar), then the images; tar without the ustar magic comes last,
 * because a disk image's first 1024 bytes may be all zeros, which also read
 * as the end block of an empty tar, and a v7 header has only its checksum
 * to go by. Undefined for anything else.
 */
export function detectFormat(head: Buffer): FileFormat | undefined {
  const compressed = compressionMagic(head);
  if (compressed) return compressed;
  const cpio = cpioMagic(head);
  if (cpio) return cpio;
  if (hasUstarMagic(head)) return "tar";
  if (isSquashfsImage(head)) return "squashfs";
  if (isElf(head)) return "elf";
  if (isErofsImage(head)) return "erofs";
  if (isExt4Image(head)) return "ext4";
  if (isTarHeader(head)) return "tar";
  return undefined;
}

/** The first `bytes` of a file (fewer if it is shorter). */
export async function readHead(path: string, bytes = DETECT_HEAD_BYTES): Promise<Buffer> {
  const handle = await open(path, "r").catch((e: Error) => {
    throw new A3sError("ENOENT", `cannot open ${path}: ${e.message}`, { subject: path, cause: e });
  });
  try {
    const buf = Buffer.alloc(bytes);
    const { bytesRead } = await handle.read(buf, 0, bytes, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** `detectFormat` of a file's first bytes. */
export async function detectFileFormat(path: string): Promise<FileFormat | undefined> {
  return detectFormat(await readHead(path));
}

/** What a file's name claims it is, by its last extension, and what is missing when its bytes say otherwise. */
const NAME_CLAIMS: readonly { readonly suffix: RegExp; readonly format: string; readonly missing: string }[] = [
  { suffix: /\.erofs$/i, format: "erofs", missing: EROFS_MAGIC_MISSING },
  { suffix: /\.ext[234]$/i, format: "ext4", missing: EXT4_MAGIC_MISSING },
  { suffix: /\.(squashfs|sqfs|sfs)$/i, format: "squashfs", missing: SQUASHFS_MAGIC_MISSING },
  { suffix: /\.tar$/i, format: "tar", missing: TAR_MAGIC_MISSING },
  { suffix: /\.cpio$/i, format: "cpio", missing: CPIO_MAGIC_MISSING },
  { suffix: /\.(gz|tgz)$/i, format: "gzip", missing: COMPRESSION_MAGIC_MISSING.gzip },
  { suffix: /\.(zst|zstd)$/i, format: "zstd", missing: COMPRESSION_MAGIC_MISSING.zstd },
];

/**
 * The error for a file whose bytes match no format this project reads.
 * Formats are told by their bytes, never their names, but a name is what
 * the user meant: when it claims a format, the message says which magic
 * number that format needs and where, so "random bytes named x.erofs" is
 * told apart from "an erofs image we cannot read".
 */
export function unrecognisedFormat(path: string): A3sError {
  const claim = NAME_CLAIMS.find((c) => c.suffix.test(basename(path)));
  return new A3sError(
    "EFORMAT",
    `${path} is not a recognised rootfs image (no tar, cpio, ext4, erofs or squashfs magic)` +
      (claim ? `; its name says ${claim.format}, but ${claim.missing}` : ""),
    {
      subject: path,
      hint: claim
        ? `the file is not a whole ${claim.format} image: it may be damaged, cut short, or something else with that name`
        : "give a directory, a tar or cpio archive (plain, .gz or .zst), or an ext4, erofs or squashfs image",
    },
  );
}
