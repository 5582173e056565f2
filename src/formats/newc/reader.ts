import { A3sError } from "../../errors.js";
import { bytesContent, type ContentRef, type FileInode, type MetadataInit, type RootfsTree } from "../../tree/index.js";
import { DEFAULT_MAX_ENTRIES, inArchive, MAX_NAME_BYTES, type ArchiveFile, type ArchiveLimits } from "../archive/index.js";
import { cpioMagic, NEWC_HEADER as HEADER, NEWC_TRAILER as TRAILER, odcRefused } from "./magic.js";

const S_IFMT = 0o170000;

/**
 * Reads a cpio "newc" (070701) or "crc" (070702) archive into `tree`, as the
 * kernel unpacks an initramfs:
 * - names are relative to the root whatever their form ("dev/x", "./dev/x",
 *   "/dev/x"); each goes through the tree's add* methods, so a name climbing
 *   above the root ("../x") is refused and nothing can land outside the tree;
 * - regular files that share (devmajor, devminor, ino) and have nlink > 1 are
 *   one inode; its data is whichever of its names carries a non-empty body
 *   (GNU cpio puts it on the last name, other writers on the first);
 * - after "TRAILER!!!" and its zero padding another archive may follow
 *   (the kernel accepts concatenated archives); anything else there is refused.
 * The crc checksum is not verified. Old binary and "odc" (070707) archives are refused.
 */
export async function readCpioInto(tree: RootfsTree, file: ArchiveFile, limits: ArchiveLimits = {}): Promise<void> {
  const maxEntries = limits.maxEntries ?? DEFAULT_MAX_ENTRIES;
  const firstNameOf = new Map<string, string>();
  let members = 0;
  let pos = 0;
  const fail = (message: string): A3sError =>
    new A3sError("ECORRUPT", `${file.label}: ${message} (entry at byte ${pos})`, { subject: file.label });

  for (;;) {
    if (pos >= file.size) {
      throw new A3sError(
        "ECORRUPT",
        `${file.label} is truncated: it ends at byte ${pos} without the cpio trailer (TRAILER!!!), so entries after byte ${pos} may be missing`,
        { subject: file.label, hint: "copy or download it again" },
      );
    }
    const h = await readHeader(file, pos, fail);
    if (h.name === TRAILER) {
      pos = await skipPadding(file, h.next);
      if (pos >= file.size) return;
      const more = await file.read(pos, 6, "a cpio header");
      if (cpioMagic(more) === undefined) {
        throw new A3sError("EUNSUPPORTED", `${file.label} has data after the cpio trailer that is not another cpio archive`, {
          subject: file.label,
          hint: "a concatenated compressed initramfs must be split first",
        });
      }
      continue;
    }
    if (++members > maxEntries) {
      throw new A3sError("ELIMIT", `${file.label} has more than ${maxEntries} entries`, { subject: file.label });
    }
    try {
      await addEntry(tree, h, file, firstNameOf, fail);
    } catch (e) {
      throw inArchive(e, file.label, h.name);
    }
    pos = h.next;
  }
}

/** One newc header: its thirteen hex fields, the name after it, and where the data and the next header start. */
interface NewcEntry {
  readonly ino: number;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly nlink: number;
  readonly mtime: number;
  readonly size: number;
  readonly devMajor: number;
  readonly devMinor: number;
  readonly rdevMajor: number;
  readonly rdevMinor: number;
  readonly name: string;
  readonly dataStart: number;
  readonly next: number;
}

async function readHeader(file: ArchiveFile, pos: number, fail: (m: string) => A3sError): Promise<NewcEntry> {
  const h = await file.read(pos, HEADER, "a cpio header");
  const magic = cpioMagic(h);
  if (magic === "odc") throw odcRefused(file.label);
  if (magic !== "newc") throw fail("bad cpio magic: not a newc archive or corrupt");
  const field = (n: number): number => {
    const text = h.toString("latin1", 6 + n * 8, 14 + n * 8);
    if (!/^[0-9a-fA-F]{8}$/.test(text)) throw fail(`invalid cpio header field ${JSON.stringify(text)}`);
    return parseInt(text, 16);
  };
  const [ino, mode, uid, gid, nlink, mtime, size, devMajor, devMinor, rdevMajor, rdevMinor, nameSize] = Array.from(
    { length: 12 },
    (_, i) => field(i),
  ) as number[] as [number, number, number, number, number, number, number, number, number, number, number, number];
  if (nameSize < 2 || nameSize > MAX_NAME_BYTES + 1) throw fail(`invalid name size ${nameSize}`);
  const nameBytes = await file.read(pos + HEADER, nameSize, "a cpio name");
  if (nameBytes[nameSize - 1] !== 0) throw fail("cpio name is not NUL-terminated");
  const name = nameBytes.toString("utf8", 0, nameSize - 1);
  const dataStart = align4(pos + HEADER + nameSize);
  if (dataStart + size > file.size) throw fail(`data of ${name} runs past the end of the archive (truncated)`);
  return { ino, mode, uid, gid, nlink, mtime, size, devMajor, devMinor, rdevMajor, rdevMinor, name, dataStart, next: align4(dataStart + size) };
}

/** Adds one entry by its file type; a regular file seen before under another name becomes a hardlink to it. */
async function addEntry(tree: RootfsTree, h: NewcEntry, file: ArchiveFile, firstNameOf: Map<string, string>, fail: (m: string) => A3sError): Promise<void> {
  const { name, mode, size } = h;
  const meta: MetadataInit = { mode: mode & 0o7777, uid: h.uid, gid: h.gid, mtime: h.mtime };
  const content: ContentRef = size === 0 ? bytesContent(new Uint8Array(0)) : { type: "blobRange", blobPath: file.path, offset: h.dataStart, size };
  switch (mode & S_IFMT) {
    case 0o100000: {
      const key = `${h.devMajor}:${h.devMinor}:${h.ino}`;
      const first = h.nlink > 1 ? firstNameOf.get(key) : undefined;
      if (first === undefined) {
        tree.addFile(name, content, meta);
        if (h.nlink > 1) firstNameOf.set(key, name);
      } else {
        const inode = tree.addHardlink(name, first) as FileInode;
        if (size > 0) inode.content = content;
      }
      return;
    }
    case 0o040000:
      tree.addDirectory(name, meta);
      return;
    case 0o120000: {
      if (size === 0 || size > MAX_NAME_BYTES) throw fail(`symlink ${name} has an invalid target length ${size}`);
      const target = (await file.read(h.dataStart, size, "a symlink target")).toString("utf8");
      tree.addSymlink(name, target, meta);
      return;
    }
    case 0o020000:
    case 0o060000:
      tree.addDevice(name, (mode & S_IFMT) === 0o020000 ? "char" : "block", h.rdevMajor, h.rdevMinor, meta);
      return;
    case 0o010000:
      tree.addFifo(name, meta);
      return;
    case 0o140000:
      throw new A3sError("EUNSUPPORTED", `${file.label}: ${name} is a socket, which a rootfs tree cannot hold`, { subject: name });
    default:
      throw fail(`unknown file type in mode ${mode.toString(8)} of ${name}`);
  }
}

function align4(n: number): number {
  return Math.ceil(n / 4) * 4;
}

/** The position of the first non-zero 4-byte word at or after `pos` (or the file's end). */
async function skipPadding(file: ArchiveFile, pos: number): Promise<number> {
  while (pos + 4 <= file.size) {
    const word = await file.read(pos, 4, "padding");
    if (word.readUInt32BE(0) !== 0) return pos;
    pos += 4;
  }
  return file.size;
}
