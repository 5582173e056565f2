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

/** Where the checksum field is, and how wide. */
const CHECKSUM_AT = 148;
const CHECKSUM_WIDTH = 8;

/** The header checksum: the sum of all bytes with the checksum field read as spaces (unsigned, or signed as some old tars wrote it). */
export function checksumMatches(h: Buffer): boolean {
  const stored = storedChecksum(h);
  if (!Number.isInteger(stored)) return false;
  // One pass over the block; the field's own bytes are then taken back out.
  let unsigned = 0;
  let high = 0;
  for (let i = 0; i < TAR_BLOCK; i++) {
    const b = h[i] as number;
    unsigned += b;
    if (b > 127) high++;
  }
  for (let i = CHECKSUM_AT; i < CHECKSUM_AT + CHECKSUM_WIDTH; i++) {
    const b = h[i] as number;
    unsigned += 0x20 - b;
    if (b > 127) high--;
  }
  return stored === unsigned || stored === unsigned - 256 * high;
}

/**
 * The checksum field's value: the usual form (octal digits between spaces
 * and NULs) read byte by byte, anything else as parseInt reads the text up
 * to its first NUL, as before the fast path.
 */
function storedChecksum(h: Buffer): number {
  const end = CHECKSUM_AT + CHECKSUM_WIDTH;
  let i = CHECKSUM_AT;
  while (i < end && h[i] === 0x20) i++;
  let n = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = h[i] as number;
    if (c < 0x30 || c > 0x37) break;
    n = n * 8 + (c - 0x30);
    digits++;
  }
  while (i < end && h[i] === 0x20) i++;
  if (digits > 0 && (i === end || h[i] === 0)) return n;
  return parseInt(cString(h, CHECKSUM_AT, CHECKSUM_WIDTH).trim(), 8);
}

/** A NUL-terminated (or field-filling) UTF-8 string. */
export function cString(buf: Buffer, at: number, width: number): string {
  const end = buf.indexOf(0, at);
  return buf.toString("utf8", at, end === -1 || end > at + width ? at + width : end);
}

/** What is missing when a file named like a tar archive is not one (for `unrecognisedFormat`). */
export const TAR_MAGIC_MISSING = 'its first 512 bytes are not a tar header (no "ustar" magic at byte 257, and the header checksum does not match)';
