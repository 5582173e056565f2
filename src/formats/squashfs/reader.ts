import { open, stat } from "node:fs/promises";
import { join } from "node:path";
import { A3sError } from "../../errors.js";
import { RootfsTree, type ContentRef, type MetadataInit } from "../../tree/index.js";
import { requireTool, runTool } from "../../util/host-tool.js";
import { runningAsRoot } from "../../util/running-as-root.js";
import { readDirectoryTree, readHostXattrs } from "../dir/index.js";
import { makeScratchDir, type ImageTree } from "../image/index.js";

/**
 * Reads a squashfs image into a tree with squashfs-tools, without mounting
 * it (mounting an untrusted image runs the kernel's filesystem code on
 * hostile bytes, a well-known source of kernel bugs).
 *
 * As root: `unsquashfs -d` into a private scratch directory, which is exact
 * (owners, modes with setuid/setgid/sticky, devices, fifos, hardlinks,
 * xattrs incl. security.capability), read back with lstat and getfattr.
 * Names come from readdir, so no name can be mistaken for another.
 *
 * Not root: `unsquashfs -pf FILE` writes a pseudo file, one line per name
 * with its type, mtime, mode, uid, gid and device numbers, hardlinks as
 * links to the first name, then every regular file's data once; the tree's
 * file contents are ranges of that file. That is exact except for xattrs,
 * which squashfs-tools 4.5's pseudo file does not carry (the report says so),
 * and except for names or symlink targets containing a newline, which the
 * pseudo file writes raw. The parser refuses what it cannot read: a name
 * listed twice, a name before its directory, an unknown record, or data
 * that does not end where the records say.
 */
export async function readSquashfsImage(image: string, opts: { privileged?: boolean } = {}): Promise<ImageTree> {
  const unsquashfs = requireTool("unsquashfs", "squashfs-tools");
  const scratch = makeScratchDir("a3s-inspect-sqfs-");
  const env = { ...process.env, LC_ALL: "C", TZ: "UTC" };
  try {
    if (opts.privileged ?? runningAsRoot()) {
      const root = join(scratch.path, "root");
      await runTool(unsquashfs, ["-no-progress", "-quiet", "-d", root, image], { env });
      const tree = await readDirectoryTree(root);
      const xattrs = (await squashfsHasXattrs(image)) ? await readHostXattrs(root) : new Map<string, Map<string, Buffer>>();
      if (xattrs) {
        for (const [path, attrs] of xattrs) {
          const inode = tree.lookup(path, false);
          if (inode) inode.xattrs = new Map(attrs);
        }
      }
      const notes = xattrs ? [] : ["squashfs xattrs were not read: getfattr is not installed (Debian package attr)"];
      return { tree, xattrsRead: xattrs !== undefined, notes, dispose: scratch.dispose };
    }
    const pseudo = join(scratch.path, "pseudo");
    await runTool(unsquashfs, ["-no-progress", "-pf", pseudo, image], { env });
    const tree = await parsePseudoFile(pseudo);
    const hasXattrs = await squashfsHasXattrs(image);
    const notes = hasXattrs
      ? ["squashfs xattrs (file capabilities among them) were not read: without root, squashfs-tools 4.5 cannot list them"]
      : [];
    return { tree, xattrsRead: !hasXattrs, notes, dispose: scratch.dispose };
  } catch (e) {
    await scratch.dispose();
    throw e;
  }
}

/** The superblock's xattr_id_table_start is all ones when the image stores no xattrs. */
async function squashfsHasXattrs(image: string): Promise<boolean> {
  const fh = await open(image, "r");
  try {
    const sb = Buffer.alloc(96);
    await fh.read(sb, 0, 96, 0);
    return sb.readBigUInt64LE(56) !== 0xffffffffffffffffn;
  } finally {
    await fh.close();
  }
}

const DATA_MARKER = "#\n# START OF DATA - DO NOT MODIFY\n#\n";

/** Parses `unsquashfs -pf` output into a tree whose files are ranges of that file. */
export async function parsePseudoFile(pseudoPath: string): Promise<RootfsTree> {
  const size = (await stat(pseudoPath)).size;
  const text = await readRecords(pseudoPath, size);
  const dataStart = Buffer.byteLength(text, "latin1") + DATA_MARKER.length;
  const bad = (why: string): A3sError => new A3sError("EFORMAT", `unsquashfs pseudo file ${pseudoPath}: ${why}`, { subject: pseudoPath });
  const tree = new RootfsTree();
  const seen = new Set<string>();
  let dataEnd = 0;
  for (let at = 0; at < text.length; ) {
    const { name, next } = readName(text, at);
    const end = text.indexOf("\n", next);
    if (end < 0) throw bad("a record does not end with a newline");
    const fields = text.slice(next, end).split(" ");
    at = end + 1;
    const path = name === "/" ? "/" : "/" + name;
    if (seen.has(path)) throw bad(`${JSON.stringify(path)} is listed twice`);
    seen.add(path);
    if (fields[0] === "L") {
      const target = "/" + unescape(fields.slice(1).join(" "));
      if (!seen.has(target)) throw bad(`hardlink ${JSON.stringify(path)} points to an unlisted name`);
      tree.addHardlink(utf8(path), utf8(target));
      continue;
    }
    if (path !== "/" && !seen.has(parentOf(path))) throw bad(`${JSON.stringify(path)} comes before its directory`);
    const fileEnd = addRecord(tree, path, fields, { pseudoPath, dataStart }, bad);
    dataEnd = Math.max(dataEnd, fileEnd);
  }
  if (dataStart + dataEnd !== size) throw bad(`the data does not end where the records say (${dataStart + dataEnd} != ${size})`);
  return tree;
}

/** The records at the head of the pseudo file (they are small), read up to the data marker, as latin1 text. */
async function readRecords(pseudoPath: string, size: number): Promise<string> {
  const fh = await open(pseudoPath, "r");
  try {
    const chunks: Buffer[] = [];
    let read = 0;
    let found = -1;
    while (found < 0 && read < size) {
      const buf = Buffer.alloc(Math.min(1 << 20, size - read));
      const { bytesRead } = await fh.read(buf, 0, buf.length, read);
      if (bytesRead === 0) break;
      chunks.push(buf.subarray(0, bytesRead));
      read += bytesRead;
      found = Buffer.concat(chunks).indexOf(DATA_MARKER, 0, "latin1");
    }
    const all = Buffer.concat(chunks);
    return all.subarray(0, found < 0 ? all.length : found).toString("latin1");
  } finally {
    await fh.close();
  }
}

/**
 * Adds one record other than a hardlink: "TYPE MTIME MODE UID GID ...",
 * where a regular file goes on with its size and its data's offset after the
 * marker. Returns where that file's data ends (0 for other kinds).
 */
function addRecord(
  tree: RootfsTree,
  path: string,
  fields: readonly string[],
  data: { pseudoPath: string; dataStart: number },
  bad: (why: string) => A3sError,
): number {
  const num = (i: number): number => {
    const v = Number(fields[i]);
    if (!Number.isInteger(v)) throw bad(`${JSON.stringify(path)}: field ${i} is not a number`);
    return v;
  };
  const meta: MetadataInit = { mtime: num(1), mode: parseInt(fields[2] ?? "", 8), uid: num(3) >>> 0, gid: num(4) >>> 0 };
  if (!Number.isInteger(meta.mode)) throw bad(`${JSON.stringify(path)}: bad mode`);
  const p = utf8(path);
  const type = fields[0];
  switch (type) {
    case "D":
      tree.addDirectory(p, meta);
      return 0;
    case "R": {
      const fileSize = num(5);
      const offset = num(6);
      // An empty file is given as bytes: a zero-length range has no valid end offset to stream.
      const content: ContentRef =
        fileSize === 0 ? { type: "bytes", data: new Uint8Array(0) } : { type: "blobRange", blobPath: data.pseudoPath, offset: data.dataStart + offset, size: fileSize };
      tree.addFile(p, content, meta);
      return offset + fileSize;
    }
    case "S":
      tree.addSymlink(p, Buffer.from(fields.slice(5).join(" "), "latin1").toString("utf8"), meta);
      return 0;
    case "C":
    case "B": {
      const { major, minor } = deviceNumbers(num(5), num(6));
      tree.addDevice(p, type === "C" ? "char" : "block", major, minor, meta);
      return 0;
    }
    case "I":
      if (fields[5] === "f") tree.addFifo(p, meta);
      // Sockets ("I ... s") are runtime objects; like the other readers, skip them.
      return 0;
    default:
      throw bad(`${JSON.stringify(path)} has an unknown type ${JSON.stringify(type)}`);
  }
}

/** A name up to the first unescaped space; "\X" stands for X. */
function readName(text: string, from: number): { name: string; next: number } {
  let i = from;
  while (i < text.length && text[i] !== " ") i += text[i] === "\\" ? 2 : 1;
  return { name: unescape(text.slice(from, i)), next: i + 1 };
}

function unescape(s: string): string {
  return s.replace(/\\(.)/gs, "$1");
}

function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash <= 0 ? "/" : path.slice(0, slash);
}

/** The pseudo file is read as bytes (latin1); names in the tree are UTF-8 strings. */
function utf8(latin1: string): string {
  return Buffer.from(latin1, "latin1").toString("utf8");
}

/**
 * squashfs stores a device as the kernel's 32-bit new_encode_dev value.
 * unsquashfs 4.5 prints it split as if it were the old 8-bit-minor form
 * (so 300:70000 shows as "1118508 112"); a major above 12 bits cannot be
 * real, so such a pair is re-joined and decoded the kernel's way.
 */
function deviceNumbers(major: number, minor: number): { major: number; minor: number } {
  if (major <= 0xfff) return { major, minor };
  const raw = (major * 256 + minor) >>> 0;
  return { major: (raw & 0xfff00) >>> 8, minor: (raw & 0xff) | ((raw >>> 12) & 0xfff00) };
}
