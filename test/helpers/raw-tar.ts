import { encodePaxRecords } from "../../src/formats/tar/index.js";

/**
 * Raw tar bytes for hostile-input tests: any name (no normalisation), any
 * typeflag, a size that disagrees with the data, PAX and GNU extended
 * headers in any order, bad checksums, truncations. Nothing here checks
 * anything: that is the point.
 */

export const BLOCK = 512;

export interface RawHeader {
  /** Raw bytes of the 100-byte name field (longer is cut). */
  name: string | Buffer;
  /** A one-character typeflag; default "0". */
  type?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  /** The size field; default: the length of the data given to `member`. */
  size?: number;
  mtime?: number;
  linkName?: string | Buffer;
  devMajor?: number;
  devMinor?: number;
  /** The ustar prefix field (155 bytes). */
  prefix?: string;
  /** "ustar\0" + "00" (POSIX, default), "gnu" ("ustar  \0"), or "v7" (none). */
  magic?: "posix" | "gnu" | "v7";
  /** Add this to the correct checksum (non-zero corrupts the header). */
  checksumDelta?: number;
}

/** One 512-byte header block. */
export function header(h: RawHeader): Buffer {
  const b = Buffer.alloc(BLOCK);
  const put = (value: string | Buffer, at: number, width: number): void => {
    const bytes = typeof value === "string" ? Buffer.from(value, "utf8") : value;
    bytes.copy(b, at, 0, Math.min(bytes.length, width));
  };
  const octal = (n: number, at: number, width: number): void => put(n.toString(8).padStart(width - 1, "0") + "\0", at, width);
  put(h.name, 0, 100);
  octal(h.mode ?? 0o644, 100, 8);
  octal(h.uid ?? 0, 108, 8);
  octal(h.gid ?? 0, 116, 8);
  octal(h.size ?? 0, 124, 12);
  octal(h.mtime ?? 1_700_000_000, 136, 12);
  put(h.type ?? "0", 156, 1);
  if (h.linkName !== undefined) put(h.linkName, 157, 100);
  const magic = h.magic ?? "posix";
  if (magic === "posix") put("ustar\x0000", 257, 8);
  else if (magic === "gnu") put("ustar  \x00", 257, 8);
  octal(h.devMajor ?? 0, 329, 8);
  octal(h.devMinor ?? 0, 337, 8);
  if (h.prefix !== undefined && magic === "posix") put(h.prefix, 345, 155);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of b) sum += byte;
  put((sum + (h.checksumDelta ?? 0)).toString(8).padStart(6, "0") + "\0 ", 148, 8);
  return b;
}

/** Zero bytes that bring `n` up to a block boundary. */
export function pad(n: number): Buffer {
  return Buffer.alloc((BLOCK - (n % BLOCK)) % BLOCK);
}

/** A member: its header (size defaults to the data's length), the data, the padding. */
export function member(h: RawHeader, data: string | Buffer = ""): Buffer {
  const bytes = typeof data === "string" ? Buffer.from(data) : data;
  return Buffer.concat([header({ ...h, size: h.size ?? bytes.length }), bytes, pad(bytes.length)]);
}

/** A PAX extended header ('x' for the next member, 'g' global) with these records. */
export function pax(records: Record<string, string | Buffer> | [string, string | Buffer][], type: "x" | "g" = "x"): Buffer {
  const list = Array.isArray(records) ? records : Object.entries(records);
  const body = encodePaxRecords(list.map(([k, v]) => [k, typeof v === "string" ? Buffer.from(v) : v] as const));
  return member({ name: "PaxHeaders/x", type }, body);
}

/** A PAX header whose body is given verbatim (for malformed records). */
export function paxRaw(body: string | Buffer, type: "x" | "g" = "x"): Buffer {
  return member({ name: "PaxHeaders/x", type }, body);
}

/** A GNU long name ('L') or long link name ('K') member. */
export function gnuLong(value: string, type: "L" | "K" = "L"): Buffer {
  return member({ name: "././@LongLink", type, magic: "gnu" }, Buffer.from(value + "\0"));
}

/** The end-of-archive marker: two zero blocks. */
export function end(): Buffer {
  return Buffer.alloc(2 * BLOCK);
}

/** A whole archive from its parts, with the end marker. */
export function tar(...parts: Buffer[]): Buffer {
  return Buffer.concat([...parts, end()]);
}

/** Shorthands for common members. */
export const raw = {
  file: (name: string, data: string | Buffer = "", h: Partial<RawHeader> = {}): Buffer => member({ name, ...h }, data),
  dir: (name: string, h: Partial<RawHeader> = {}): Buffer => member({ name, type: "5", mode: 0o755, ...h }),
  symlink: (name: string, target: string, h: Partial<RawHeader> = {}): Buffer =>
    member({ name, type: "2", linkName: target, mode: 0o777, ...h }),
  hardlink: (name: string, target: string, h: Partial<RawHeader> = {}): Buffer => member({ name, type: "1", linkName: target, ...h }),
  fifo: (name: string, h: Partial<RawHeader> = {}): Buffer => member({ name, type: "6", ...h }),
  device: (name: string, kind: "char" | "block", major: number, minor: number, h: Partial<RawHeader> = {}): Buffer =>
    member({ name, type: kind === "char" ? "3" : "4", devMajor: major, devMinor: minor, ...h }),
};
