/** A tar archive is a sequence of 512-byte blocks: headers, then member data padded to a block. */
export const TAR_BLOCK = 512;

/** Whether a block carries the ustar magic ("ustar" at byte 257): POSIX, GNU and PAX headers do; v7 ones do not. */
export function hasUstarMagic(h: Buffer): boolean {
  return h.length >= TAR_BLOCK && h.toString("latin1", 257, 262) === "ustar";
}

/**
 * Whether a block is a tar header: ustar magic, or a checksum that matches
 * (v7 archives have no magic), or the zero block of an empty archive.
 */
export function isTarHeader(h: Buffer): boolean {
  if (h.length < TAR_BLOCK) return false;
  return hasUstarMagic(h) || isZeroBlock(h) || checksumMatches(h);
}

export function isZeroBlock(h: Buffer): boolean {
  for (let i = 0; i < TAR_BLOCK; i++) if (h[i] !== 0) return false;
  return true;
}

/** The header checksum: the sum of all bytes with the checksum field read as spaces (unsigned, or signed as some old tars wrote it). */
export function checksumMatches(h: Buffer): boolean {
  const stored = parseInt(cString(h, 148, 8).trim(), 8);
  if (!Number.isInteger(stored)) return false;
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < TAR_BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : (h[i] as number);
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return stored === unsigned || stored === signed;
}

/** A NUL-terminated (or field-filling) UTF-8 string. */
export function cString(buf: Buffer, at: number, width: number): string {
  const end = buf.indexOf(0, at);
  return buf.toString("utf8", at, end === -1 || end > at + width ? at + width : end);
}

/** What is missing when a file named like a tar archive is not one (for `unrecognisedFormat`). */
export const TAR_MAGIC_MISSING = 'its first 512 bytes are not a tar header (no "ustar" magic at byte 257, and the header checksum does not match)';
