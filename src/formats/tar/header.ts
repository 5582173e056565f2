import { A3sError } from "../../errors.js";
import type { ChunkWriter } from "../archive/index.js";
import { TAR_BLOCK } from "./magic.js";

/**
 * One tar member's header, written as POSIX ustar plus, when a value does not
 * fit ustar, a PAX extended header ('x') just before it. PAX (POSIX.1-2001) is
 * what GNU tar, bsdtar, Go and every OCI tool read; the GNU-only 'L'/'K' long
 * name members and base-256 numbers are not used.
 */

/** ustar typeflags. */
export const TAR_TYPE = {
  file: "0",
  hardlink: "1",
  symlink: "2",
  char: "3",
  block: "4",
  directory: "5",
  fifo: "6",
  paxHeader: "x",
} as const;

export interface TarHeaderFields {
  /** The member name as it goes in the archive ("etc/passwd", "usr/" for a directory). */
  name: string;
  type: (typeof TAR_TYPE)[keyof typeof TAR_TYPE];
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkName?: string;
  devMajor?: number;
  devMinor?: number;
  xattrs?: ReadonlyMap<string, Uint8Array>;
}

const NAME_MAX = 100;
const PREFIX_MAX = 155;
/** Largest value of an 8-byte octal field (7 digits + NUL): uid, gid, mode, device numbers. */
const OCTAL7_MAX = 0o7777777;
/** Largest value of a 12-byte octal field (11 digits + NUL): size, mtime. */
const OCTAL11_MAX = 0o77777777777;

/**
 * Writes the header block(s) of one member: the PAX header when needed, then
 * the ustar header. The member's data (if any) and its padding follow from the caller.
 */
export function writeTarHeader(out: ChunkWriter, h: TarHeaderFields): void {
  const pax: [string, Uint8Array][] = [];
  const name = Buffer.from(h.name, "utf8");
  const split = splitUstarName(name);
  if (!split) pax.push(["path", name]);
  const link = h.linkName === undefined ? undefined : Buffer.from(h.linkName, "utf8");
  if (link && link.length > NAME_MAX) pax.push(["linkpath", link]);
  if (h.size > OCTAL11_MAX) pax.push(["size", ascii(h.size)]);
  // A reader that ignores PAX sees the largest ustar id, never 0: an owner
  // that does not fit must not turn into root in an older tool's hands.
  if (h.uid > OCTAL7_MAX) pax.push(["uid", ascii(h.uid)]);
  if (h.gid > OCTAL7_MAX) pax.push(["gid", ascii(h.gid)]);
  if (h.mtime < 0 || h.mtime > OCTAL11_MAX) pax.push(["mtime", ascii(h.mtime)]);
  if ((h.devMajor ?? 0) > OCTAL7_MAX || (h.devMinor ?? 0) > OCTAL7_MAX) {
    throw new A3sError("ETOOBIG", `device numbers ${h.devMajor}:${h.devMinor} of ${h.name} do not fit a tar header`, {
      subject: h.name,
      hint: "Linux device majors are at most 4095 and minors at most 1048575",
    });
  }
  if (h.xattrs && h.xattrs.size > 0) {
    // Sorted so the bytes do not depend on the order the attributes were set in.
    for (const key of [...h.xattrs.keys()].sort()) {
      if (key === "" || key.includes("=") || key.includes("\0")) {
        throw new A3sError("EXATTR", `extended attribute name ${JSON.stringify(key)} of ${h.name} cannot be stored in tar`, {
          subject: h.name,
        });
      }
      // Values are raw bytes: a PAX record is length-prefixed, so binary
      // values such as security.capability need no encoding (GNU tar does the same).
      pax.push([`SCHILY.xattr.${key}`, h.xattrs.get(key) as Uint8Array]);
    }
  }

  if (pax.length > 0) {
    const body = encodePaxRecords(pax);
    // The PAX member's own name is derived from the entry, never from a pid
    // or a clock (GNU tar's default "%d/PaxHeaders.%p/%f"), for reproducibility.
    writeUstarBlock(out, {
      name: paxMemberName(name),
      prefix: undefined,
      type: TAR_TYPE.paxHeader,
      mode: 0o644,
      uid: 0,
      gid: 0,
      size: body.length,
      mtime: clampOctal11(h.mtime),
      linkName: undefined,
      devMajor: 0,
      devMinor: 0,
    });
    out.bytes(body);
    out.zeros(padding(body.length));
  }

  writeUstarBlock(out, {
    name: split ? split.name : truncateUtf8(name, NAME_MAX),
    prefix: split?.prefix,
    type: h.type,
    mode: h.mode,
    uid: Math.min(h.uid, OCTAL7_MAX),
    gid: Math.min(h.gid, OCTAL7_MAX),
    size: h.size > OCTAL11_MAX ? 0 : h.size,
    mtime: clampOctal11(h.mtime),
    linkName: link && link.length > NAME_MAX ? truncateUtf8(link, NAME_MAX) : link,
    devMajor: h.devMajor ?? 0,
    devMinor: h.devMinor ?? 0,
  });
}

/** Zero bytes that follow `size` bytes of member data to reach a block boundary. */
export function padding(size: number): number {
  const rest = size % TAR_BLOCK;
  return rest === 0 ? 0 : TAR_BLOCK - rest;
}

interface UstarBlock {
  name: Buffer;
  prefix: Buffer | undefined;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkName: Buffer | undefined;
  devMajor: number;
  devMinor: number;
}

function writeUstarBlock(out: ChunkWriter, b: UstarBlock): void {
  const { buf, at } = out.region(TAR_BLOCK);
  b.name.copy(buf, at + 0);
  octal(buf, at + 100, 8, b.mode);
  octal(buf, at + 108, 8, b.uid);
  octal(buf, at + 116, 8, b.gid);
  octal(buf, at + 124, 12, b.size);
  octal(buf, at + 136, 12, b.mtime);
  buf.write(b.type, at + 156, "latin1");
  b.linkName?.copy(buf, at + 157);
  buf.write("ustar\x0000", at + 257, "latin1");
  // uname and gname stay empty: ownership is numeric, and an empty name
  // makes every extractor use the numbers instead of the host's user database.
  octal(buf, at + 329, 8, b.devMajor);
  octal(buf, at + 337, 8, b.devMinor);
  b.prefix?.copy(buf, at + 345);
  // The checksum is the sum of all bytes with its own field read as eight
  // spaces. Only the ranges written above can be non-zero, so only those are summed.
  buf.fill(0x20, at + 148, at + 156);
  const sum =
    sumBytes(buf, at, at + b.name.length) +
    sumBytes(buf, at + 100, at + 157 + (b.linkName?.length ?? 0)) +
    sumBytes(buf, at + 257, at + 265) +
    sumBytes(buf, at + 329, at + 345 + (b.prefix?.length ?? 0));
  octal(buf, at + 148, 7, sum);
  buf[at + 155] = 0x20;
}

function sumBytes(buf: Buffer, from: number, to: number): number {
  let sum = 0;
  for (let i = from; i < to; i++) sum += buf[i] as number;
  return sum;
}

/** A number as zero-padded octal digits filling `width - 1` bytes, then NUL (written digit by digit: no string per field). */
function octal(buf: Buffer, at: number, width: number, value: number): void {
  buf[at + width - 1] = 0;
  for (let i = at + width - 2; i >= at; i--) {
    buf[i] = 0x30 + (value % 8);
    value = Math.floor(value / 8);
  }
}

/**
 * Splits a name that is too long for the 100-byte name field at a "/" into
 * prefix (≤155 bytes) and name (≤100 bytes), as ustar allows. Returns
 * undefined when no split fits and the name must go in a PAX record.
 */
function splitUstarName(name: Buffer): { name: Buffer; prefix: Buffer | undefined } | undefined {
  if (name.length <= NAME_MAX) return { name, prefix: undefined };
  const SLASH = 0x2f;
  // The earliest slash that leaves at most 100 bytes after it gives the
  // shortest prefix; the name part must not be empty.
  for (let i = Math.max(1, name.length - NAME_MAX - 1); i <= PREFIX_MAX && i < name.length - 1; i++) {
    if (name[i] === SLASH) return { prefix: name.subarray(0, i), name: name.subarray(i + 1) };
  }
  return undefined;
}

/** Encodes PAX records "LEN KEY=VALUE\n", where LEN counts the whole record, its own digits included. */
export function encodePaxRecords(records: readonly (readonly [string, Uint8Array])[]): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of records) {
    const rest = Buffer.byteLength(key, "utf8") + value.byteLength + 3; // " ", "=", "\n"
    let digits = String(rest).length;
    let len = rest + digits;
    if (String(len).length > digits) {
      digits = String(len).length;
      len = rest + digits;
    }
    parts.push(Buffer.from(`${len} ${key}=`, "utf8"), Buffer.from(value), Buffer.from("\n"));
  }
  return Buffer.concat(parts);
}

function paxMemberName(name: Buffer): Buffer {
  const trimmed = name[name.length - 1] === 0x2f ? name.subarray(0, name.length - 1) : name;
  const base = trimmed.subarray(trimmed.lastIndexOf(0x2f) + 1);
  return truncateUtf8(Buffer.concat([Buffer.from("PaxHeaders/"), base]), NAME_MAX);
}

/** The first at most `max` bytes of UTF-8 text, never cutting a character in half. */
function truncateUtf8(text: Buffer, max: number): Buffer {
  if (text.length <= max) return text;
  let end = max;
  while (end > 0 && ((text[end] as number) & 0xc0) === 0x80) end--;
  return text.subarray(0, end);
}

function ascii(n: number): Buffer {
  return Buffer.from(String(n), "latin1");
}

function clampOctal11(n: number): number {
  return Math.min(Math.max(n, 0), OCTAL11_MAX);
}
