import { open } from "node:fs/promises";
import { A3sError } from "../errors.js";
import { compressionMagic, type Compression, type UnsupportedCompression } from "./compression/index.js";
import { isElf } from "./elf/index.js";
import { isErofsImage } from "./erofs/index.js";
import { isExt4Image } from "./ext4/index.js";
import { cpioMagic } from "./newc/index.js";
import { isSquashfsImage } from "./squashfs/index.js";
import { hasUstarMagic, isTarHeader } from "./tar/index.js";

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
