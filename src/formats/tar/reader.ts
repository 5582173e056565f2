import { A3sError } from "../../errors.js";
import { bytesContent, type ContentRef, type MetadataInit, type RootfsTree } from "../../tree/index.js";
import type { FileIdentity } from "../../util/file-identity.js";
import {
  DEFAULT_MAX_ENTRIES,
  inArchive,
  MAX_META_MEMBER,
  MAX_NAME_BYTES,
  MAX_XATTR_VALUE,
  type ArchiveLimits,
  type ArchiveSource,
} from "../archive/index.js";
import { checksumMatches, cString, isZeroBlock, TAR_BLOCK as BLOCK } from "./magic.js";

/** Values an extended header (PAX 'x'/'g', GNU 'L'/'K') sets for the members after it. */
interface Overrides {
  path?: string;
  linkPath?: string;
  size?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  devMajor?: number;
  devMinor?: number;
  xattrs?: Map<string, Uint8Array>;
}

/** What a tar member is, once its extended headers are folded in. */
export type TarMemberKind = "file" | "hardlink" | "symlink" | "char" | "block" | "directory" | "fifo";

/** One member of a tar archive, with every extended header applied. Its data is located, never read. */
export interface TarMember {
  /** The name as the archive gives it (PAX path or GNU long name applied), not yet normalised. */
  readonly name: string;
  readonly kind: TarMemberKind;
  /** Hardlink and symlink target, verbatim. */
  readonly linkName: string;
  readonly meta: MetadataInit & { mode: number; uid: number; gid: number; mtime: number; xattrs: Map<string, Uint8Array> };
  /** Bytes of file data (0 for every kind but "file"). */
  readonly size: number;
  /** Where the data starts in the archive. */
  readonly dataOffset: number;
  readonly devMajor: number;
  readonly devMinor: number;
  /** Where the member's first header (extended headers included) starts, for messages. */
  readonly headerOffset: number;
}

/** Typeflags that never carry data (POSIX: "no data logical records shall be stored"). */
const HEADER_ONLY = new Set(["1", "2", "3", "4", "5", "6"]);

/**
 * Reads a tar archive (ustar, PAX, GNU and v7 headers) into `tree`.
 *
 * Every name goes through the tree's add* methods, so a member named
 * "../../etc/passwd" is refused (EPATH) and "/etc/passwd" lands at the tree's
 * /etc/passwd: a tarball can never name anything outside the rootfs, and
 * since this builds an in-memory tree nothing is written to disk at all.
 * File data is not read: each file's content is the range of the archive
 * that holds it. Sparse members and multi-volume archives are refused.
 */
export async function readTarInto(tree: RootfsTree, file: ArchiveSource & { readonly path: string }, limits: ArchiveLimits = {}): Promise<void> {
  for await (const m of readTarMembers(file, limits)) addTarMember(tree, m, file.path, file.label);
}

/**
 * Adds one member to the tree; its file content is the member's range of
 * `archivePath`, bound to `verified` when the archive's digest was checked
 * (see ContentRef). Errors name the member and `label` (default: the archive).
 */
export function addTarMember(tree: RootfsTree, m: TarMember, archivePath: string, label = archivePath, verified?: FileIdentity): void {
  try {
    switch (m.kind) {
      case "file": {
        const content: ContentRef =
          m.size === 0
            ? bytesContent(new Uint8Array(0))
            : { type: "blobRange", blobPath: archivePath, offset: m.dataOffset, size: m.size, ...(verified ? { verified } : {}) };
        tree.addFile(m.name, content, m.meta);
        break;
      }
      case "hardlink":
        tree.addHardlink(m.name, m.linkName);
        break;
      case "symlink":
        tree.addSymlink(m.name, m.linkName, m.meta);
        break;
      case "char":
      case "block":
        tree.addDevice(m.name, m.kind, m.devMajor, m.devMinor, m.meta);
        break;
      case "directory":
        tree.addDirectory(m.name === "" ? "/" : m.name, m.meta);
        break;
      case "fifo":
        tree.addFifo(m.name, m.meta);
        break;
    }
  } catch (e) {
    throw inArchive(e, label, m.name);
  }
}

/**
 * The members of a tar archive, one at a time, strictly parsed. Archives
 * are untrusted (image layers, downloaded tarballs), and two readers that
 * disagree about where one member ends can be shown different files (tar
 * smuggling), so every ambiguity is refused rather than resolved:
 * an extended header with no member after it, two of the same kind in a row,
 * a PAX size that contradicts the ustar size, a PAX path and a GNU long name
 * for the same member, and a link, directory, device or FIFO header that
 * claims data (POSIX says they have none; some readers skip it, some don't).
 */
export async function* readTarMembers(file: ArchiveSource, limits: ArchiveLimits = {}): AsyncGenerator<TarMember> {
  const maxEntries = limits.maxEntries ?? DEFAULT_MAX_ENTRIES;
  const global: Overrides = {};
  let local: Overrides = {};
  /** Extended header types seen since the last member, to refuse repeats and conflicts. */
  let pending = "";
  let memberStart = 0;
  let members = 0;
  let pos = 0;
  const fail = (message: string): A3sError =>
    new A3sError("ECORRUPT", `${file.label}: ${message} (member at byte ${pos})`, { subject: file.label });

  let ended = false;
  for (;;) {
    // Waiting only for bytes not there yet: see ArchiveSource.availableNow.
    const have = file.availableNow(pos, BLOCK) ?? (await file.available(pos, BLOCK));
    if (have === 0) break;
    if (have < BLOCK) throw fail("the archive is truncated inside a header");
    // A view (see ArchiveSource.peek): all that is needed from it is taken before the next read.
    const h = file.peek(pos, BLOCK) ?? (await file.read(pos, BLOCK, "a tar header"));
    if (isZeroBlock(h)) {
      if (pending !== "") throw fail("extended header is not followed by a member");
      // End of archive. POSIX asks for two zero blocks; one, with nothing
      // after it, loses nothing (GNU tar only warns of "a lone zero block").
      ended = true;
      break;
    }
    if (!checksumMatches(h)) throw fail("tar header checksum mismatch: the archive is corrupt or not a tar file");
    if (++members > maxEntries) {
      throw new A3sError("ELIMIT", `${file.label} has more than ${maxEntries} members`, {
        subject: file.label,
        hint: "raise the entry limit if the archive is trusted",
      });
    }
    if (pending === "") memberStart = pos;
    const type = String.fromCharCode(h[156] as number);
    const headerSize = parseNumber(h, 124, 12, fail);
    const isExtendedHeader = type === "x" || type === "g" || type === "L" || type === "K";
    if (!isExtendedHeader && local.size !== undefined && headerSize !== 0 && headerSize !== local.size) {
      throw fail(`PAX size ${local.size} contradicts the header's size ${headerSize}`);
    }
    // An extended header's own size is its header's; a PAX size applies to the member after it.
    const size = isExtendedHeader ? headerSize : (local.size ?? headerSize);
    const dataStart = pos + BLOCK;
    const dataThere = file.availableNow(dataStart, size) ?? (await file.available(dataStart, size));
    if (dataThere < size) throw fail("member data runs past the end of the archive (truncated)");
    const next = dataStart + Math.ceil(size / BLOCK) * BLOCK;

    if (isExtendedHeader) {
      if (size > MAX_META_MEMBER) throw fail(`extended header of ${size} bytes is too large`);
      if (type !== "g") {
        if (pending.includes(type)) throw fail(`two '${type}' extended headers for one member`);
        pending += type;
      }
      applyExtendedHeader(type, await file.read(dataStart, size, "an extended header"), type === "g" ? global : local, fail);
      pos = next;
      continue;
    }
    const member = memberOf(h, { type, size, dataStart, headerOffset: memberStart }, effectiveOverrides(global, local), file, fail);
    if (member) yield member; // a GNU volume label ('V') names the archive, not a file
    local = {};
    pending = "";
    pos = next;
  }
  if (pending !== "") throw fail("extended header is not followed by a member");
  // An empty file has no members and no marker: nothing to lose, and the
  // caller's own checks say what is missing (no manifest.json, no init...).
  // The loop ends at the archive's end, so pos > 0 means it was not empty.
  if (!ended && pos > 0) throw missingEnd(file.label, pos);
}

/**
 * A tar that stops at a member boundary without its end-of-archive marker
 * is what a copy cut on a 512-byte boundary looks like, and nothing in it
 * says how much is gone. GNU tar lists such an archive without a word; here
 * it is an error for every reader (inspect, tar: sources, layers), because
 * a tree silently missing its last entries is a wrong rootfs.
 */
function missingEnd(path: string, at: number): A3sError {
  return new A3sError(
    "ECORRUPT",
    `${path} is truncated: it ends at byte ${at} without the end-of-archive marker (two zero blocks), so entries after byte ${at} may be missing`,
    {
      subject: path,
      hint: "copy or download it again; if it is complete and its writer left the marker out, add it: head -c 1024 /dev/zero >> FILE",
    },
  );
}

/** What an extended header sets: PAX records ('x' for the next member, 'g' for all after it), or a GNU long name ('L') or link name ('K'). */
function applyExtendedHeader(type: string, data: Buffer, into: Overrides, fail: (m: string) => A3sError): void {
  if (type === "x" || type === "g") parsePax(data, into, fail);
  else if (type === "L") into.path = setOnce(into.path, cString(data, 0, data.length), "name", fail);
  else into.linkPath = setOnce(into.linkPath, cString(data, 0, data.length), "link name", fail);
}

/**
 * What applies to one member: its own records, and for owner, time and
 * xattrs the global ('g') ones beneath them. A global path, link name, size
 * or device number would name every later member alike, so only a member's
 * own count.
 */
function effectiveOverrides(global: Overrides, local: Overrides): Overrides {
  return {
    path: local.path,
    linkPath: local.linkPath,
    devMajor: local.devMajor,
    devMinor: local.devMinor,
    uid: local.uid ?? global.uid,
    gid: local.gid ?? global.gid,
    mtime: local.mtime ?? global.mtime,
    xattrs: global.xattrs === undefined && local.xattrs === undefined ? new Map() : new Map([...(global.xattrs ?? []), ...(local.xattrs ?? [])]),
  };
}

/**
 * The member a ustar header describes, with the extended headers before it
 * (`over`: the member's own records over the global ones) folded in, or
 * undefined for a GNU volume label.
 */
function memberOf(
  h: Buffer,
  at: { type: string; size: number; dataStart: number; headerOffset: number },
  over: Overrides,
  file: ArchiveSource,
  fail: (m: string) => A3sError,
): TarMember | undefined {
  const { type, size } = at;
  const magic = h.toString("latin1", 257, 263);
  const prefix = magic === "ustar\0" ? cString(h, 345, 155) : "";
  const headerName = cString(h, 0, 100);
  const name = over.path ?? (prefix ? `${prefix}/${headerName}` : headerName);
  const linkName = over.linkPath ?? cString(h, 157, 100);
  if (Buffer.byteLength(name) > MAX_NAME_BYTES || Buffer.byteLength(linkName) > MAX_NAME_BYTES) {
    throw fail("name or link name longer than PATH_MAX");
  }
  const meta = {
    mode: parseNumber(h, 100, 8, fail) & 0o7777,
    uid: over.uid ?? parseNumber(h, 108, 8, fail),
    gid: over.gid ?? parseNumber(h, 116, 8, fail),
    mtime: over.mtime ?? parseNumber(h, 136, 12, fail),
    xattrs: over.xattrs ?? new Map<string, Uint8Array>(),
  };
  for (const id of [meta.uid, meta.gid]) {
    if (id > 0xffffffff) throw fail(`owner ${id} of ${name} is out of range`);
  }
  if (HEADER_ONLY.has(type) && size > 0) {
    throw fail(`${JSON.stringify(name)} is a header-only member (type '${type}') that claims ${size} bytes of data`);
  }
  const kind = memberKind(type, name, file, fail);
  if (kind === undefined) return undefined;
  const device = kind === "char" || kind === "block";
  // A pre-POSIX directory's data, if any, is skipped like a dumpdir's; only files expose theirs.
  return {
    name,
    kind,
    linkName,
    meta,
    size: kind === "file" ? size : 0,
    dataOffset: at.dataStart,
    devMajor: over.devMajor ?? (device ? parseNumber(h, 329, 8, fail) : 0),
    devMinor: over.devMinor ?? (device ? parseNumber(h, 337, 8, fail) : 0),
    headerOffset: at.headerOffset,
  };
}

/** The kind a typeflag stands for; undefined for a volume label; sparse and multi-volume members are refused. */
function memberKind(type: string, name: string, file: ArchiveSource, fail: (m: string) => A3sError): TarMemberKind | undefined {
  switch (type) {
    case "0":
    case "\0":
    case "7":
      return name.endsWith("/") ? "directory" : "file"; // pre-POSIX directories
    case "5":
    case "D": // GNU dumpdir: a directory whose data lists its contents
      return "directory";
    case "1":
      return "hardlink";
    case "2":
      return "symlink";
    case "3":
      return "char";
    case "4":
      return "block";
    case "6":
      return "fifo";
    case "V":
      return undefined;
    case "S":
      throw new A3sError("EUNSUPPORTED", `${file.label}: ${name} is a GNU sparse member, which is not supported`, {
        subject: name,
        hint: "create the archive without --sparse",
      });
    case "M":
      throw new A3sError("EUNSUPPORTED", `${file.label} is part of a multi-volume archive`, { subject: file.label });
    default:
      throw fail(`unknown tar member type ${JSON.stringify(type)} for ${name}`);
  }
}

/** A PAX path and a GNU long name for one member would let two readers see two names: refuse. */
function setOnce(current: string | undefined, value: string, what: string, fail: (m: string) => A3sError): string {
  if (current !== undefined && current !== value) throw fail(`the member's ${what} is given twice, differently`);
  return value;
}

/**
 * A numeric field: octal text, or GNU's base-256 when the first byte has its
 * high bit set. Octal digits may have spaces and NULs on either side (writers
 * pad both ways), nothing else and nothing between them. Parsed byte by
 * byte: four or five fields of every header, and as text through regular
 * expressions they cost the scan of the bench's layer (8.7k members) about
 * 55 ms of the main thread by a CPU profile.
 */
function parseNumber(h: Buffer, at: number, width: number, fail: (m: string) => A3sError): number {
  const first = h[at] as number;
  if (first & 0x80) {
    if (first === 0xff) throw fail("negative number in a tar header");
    let n = first & 0x7f;
    for (let i = 1; i < width; i++) {
      n = n * 256 + (h[at + i] as number);
      if (n > Number.MAX_SAFE_INTEGER) throw fail("number too large in a tar header");
    }
    return n;
  }
  const end = at + width;
  let i = at;
  while (i < end && isPad(h[i] as number)) i++;
  let n = 0;
  for (; i < end; i++) {
    const c = h[i] as number;
    if (c < 0x30 || c > 0x37) break;
    n = n * 8 + (c - 0x30);
  }
  for (; i < end; i++) {
    if (!isPad(h[i] as number)) {
      const text = h.toString("latin1", at, end).replace(/[\0 ]+$/, "").replace(/^[ \0]+/, "");
      throw fail(`invalid octal number ${JSON.stringify(text)} in a tar header`);
    }
  }
  return n;
}

/** A space or NUL, which pad a numeric field. */
function isPad(c: number): boolean {
  return c === 0x20 || c === 0;
}

/**
 * PAX records "LEN KEY=VALUE\n". Values stay bytes until their key says what
 * they are, because xattr values are binary.
 */
function parsePax(data: Buffer, into: Overrides, fail: (m: string) => A3sError): void {
  let at = 0;
  while (at < data.length) {
    if (data[at] === 0) break; // some writers pad the header with NULs
    const space = data.indexOf(0x20, at);
    const digits = space === -1 ? "" : data.toString("latin1", at, space);
    const len = /^[1-9][0-9]{0,9}$/.test(digits) ? Number(digits) : NaN;
    if (!Number.isInteger(len) || len <= space - at || at + len > data.length || data[at + len - 1] !== 0x0a) {
      throw fail("malformed PAX record");
    }
    const record = data.subarray(space + 1, at + len - 1);
    const eq = record.indexOf(0x3d);
    if (eq === -1) throw fail("malformed PAX record (no '=')");
    const key = record.toString("utf8", 0, eq);
    const value = record.subarray(eq + 1);
    applyPaxRecord(key, value, into, fail);
    at += len;
  }
}

function applyPaxRecord(key: string, value: Buffer, into: Overrides, fail: (m: string) => A3sError): void {
  const text = (): string => value.toString("utf8");
  const integer = (max: number): number => {
    const n = Number(text());
    if (!/^\d+$/.test(text()) || n > max) throw fail(`invalid PAX ${key} ${JSON.stringify(text())}`);
    return n;
  };
  if (key === "path") into.path = setOnce(into.path, text(), "name", fail);
  else if (key === "linkpath") into.linkPath = setOnce(into.linkPath, text(), "link name", fail);
  else if (key === "size") into.size = integer(Number.MAX_SAFE_INTEGER);
  else if (key === "uid") into.uid = integer(0xffffffff);
  else if (key === "gid") into.gid = integer(0xffffffff);
  else if (key === "SCHILY.devmajor") into.devMajor = integer(0xffffffff);
  else if (key === "SCHILY.devminor") into.devMinor = integer(0xffffffff);
  else if (key === "mtime") {
    // Seconds with an optional fraction; the tree keeps whole seconds.
    if (!/^-?\d+(\.\d+)?$/.test(text())) throw fail(`invalid PAX mtime ${JSON.stringify(text())}`);
    into.mtime = Math.floor(Number(text()));
  } else if (key.startsWith("SCHILY.xattr.")) {
    addXattr(into, key.slice("SCHILY.xattr.".length), Buffer.from(value), fail);
  } else if (key.startsWith("LIBARCHIVE.xattr.")) {
    // bsdtar's form: the name URL-encoded, the value base64.
    let name: string;
    try {
      name = decodeURIComponent(key.slice("LIBARCHIVE.xattr.".length));
    } catch {
      throw fail(`invalid PAX key ${JSON.stringify(key)}`);
    }
    addXattr(into, name, Buffer.from(text(), "base64"), fail);
  } else if (key.startsWith("GNU.sparse.")) {
    throw new A3sError("EUNSUPPORTED", `sparse tar members are not supported (PAX ${key})`, {
      hint: "create the archive without --sparse",
    });
  }
  // Anything else (atime, ctime, uname, gname, comment, charset, ...) does not reach the tree.
}

function addXattr(into: Overrides, name: string, value: Buffer, fail: (m: string) => A3sError): void {
  if (name === "" || value.length > MAX_XATTR_VALUE) throw fail(`invalid extended attribute ${JSON.stringify(name)}`);
  (into.xattrs ??= new Map()).set(name, value);
}
