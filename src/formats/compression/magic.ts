import { A3sError } from "../../errors.js";

/** The compressions a3s-rootfs reads and writes: archives, initramfs images and OCI layers use these. */
export type Compression = "gzip" | "zstd";

/** Compressions recognised only to be named in an error. */
export type UnsupportedCompression = "xz" | "bzip2" | "lz4";

/**
 * What the first bytes of a stream say about its compression, from each
 * format's magic number: gzip 1f 8b (RFC 1952), a zstd frame 28 b5 2f fd
 * (RFC 8878), xz fd 37 7a 58 5a 00, bzip2 "BZh", lz4 frames 04 22 4d 18 and
 * the legacy 02 21 4c 18. Undefined for anything else.
 */
export function compressionMagic(head: Uint8Array): Compression | UnsupportedCompression | undefined {
  const starts = (...bytes: number[]): boolean => head.length >= bytes.length && bytes.every((b, i) => head[i] === b);
  if (starts(0x1f, 0x8b)) return "gzip";
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return "zstd";
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return "xz";
  if (starts(0x42, 0x5a, 0x68)) return "bzip2";
  if (starts(0x04, 0x22, 0x4d, 0x18) || starts(0x02, 0x21, 0x4c, 0x18)) return "lz4";
  return undefined;
}

/** Whether a detected format is any compression, supported or not. */
export function isCompression(format: string | undefined): format is Compression | UnsupportedCompression {
  return format === "gzip" || format === "zstd" || format === "xz" || format === "bzip2" || format === "lz4";
}

/**
 * The compression a detected format (formats/detect.ts) stands for: gzip or
 * zstd, "none" for any format that is not a compression; xz, bzip2 and lz4
 * are refused by name.
 */
export function supportedCompression(format: string | undefined, subject: string): Compression | "none" {
  if (format === "gzip" || format === "zstd") return format;
  if (format === "xz" || format === "bzip2" || format === "lz4") throw unsupportedCompression(format, subject);
  return "none";
}

/** The error for data compressed with something other than gzip or zstd, naming what it is. */
function unsupportedCompression(kind: UnsupportedCompression, subject: string): A3sError {
  return new A3sError("EUNSUPPORTED", `${subject} is ${kind}-compressed; only gzip and zstd are supported`, {
    subject,
    hint: `decompress it first, or recompress it with gzip or zstd`,
  });
}

/** What is missing when a file named like a compressed one is not (for `unrecognisedFormat`). */
export const COMPRESSION_MAGIC_MISSING: Readonly<Record<Compression, string>> = {
  gzip: "the gzip magic (1f 8b) is missing at byte 0",
  zstd: "the zstd magic (28 b5 2f fd) is missing at byte 0",
};
