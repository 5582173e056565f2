import { readFile, stat, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { A3sError } from "../../errors.js";
import { RootfsTree, type MetadataInit } from "../../tree/index.js";
import { requireTool, runTool } from "../../util/host-tool.js";
import { makeScratchDir, type ImageTree } from "../image/index.js";

/**
 * Reads an ext2/3/4 image into a tree with debugfs (e2fsprogs), without
 * mounting it and without root: debugfs reads the image file itself.
 *
 * - names, inode numbers, modes and owners: `ls -p <INODE>` for every
 *   directory, level by level (one debugfs run per level);
 * - mtimes, device numbers, fast symlink targets, xattr names: `stat <INODE>`
 *   for every inode (one run);
 * - file contents, slow symlink targets and xattr values: `dump` and
 *   `ea_get -f` into a private scratch directory (one run).
 *
 * Exact for kinds, modes with setuid/setgid/sticky, 32-bit owners, mtimes
 * (with the 34-bit extension), device numbers, hardlinks (one inode number,
 * several names) and every xattr. Every command addresses inodes by number,
 * so no name from the image is ever parsed as a debugfs argument.
 *
 * debugfs prints names raw, so its output is untrusted text: listings are
 * parsed record by record ("/INO/MODE/UID/GID/NAME/SIZE/", where a name can
 * hold any byte but "/" and NUL), and each stat section must be announced by
 * exactly the command that was sent, in order; anything else is refused.
 */
export async function readExt4Image(image: string): Promise<ImageTree> {
  const debugfs = requireTool("debugfs", "e2fsprogs");
  const imagePath = resolve(image);
  const scratch = makeScratchDir("a3s-inspect-ext4-");
  try {
    const session: Debugfs = {
      scratch: scratch.path,
      run: async (commands) => {
        const script = join(scratch.path, "commands");
        await writeFile(script, commands.join("\n") + "\n");
        const r = await runTool(debugfs, ["-c", "-f", script, imagePath], { env: { ...process.env, LC_ALL: "C", TZ: "UTC" } });
        return r.stdoutBytes.toString("latin1");
      },
      bad: (why) => new A3sError("EFORMAT", `${imagePath}: cannot read the ext4 image: ${why}`, { subject: imagePath }),
    };
    const all = await listNames(session);
    const details = await statInodes(session, all);
    const fetched = await fetchContents(session, all, details);
    const tree = await buildTree(session, all, details, fetched);
    return { tree, xattrsRead: true, notes: [], dispose: scratch.dispose };
  } catch (e) {
    await scratch.dispose();
    throw e;
  }
}

/** One image opened with debugfs: runs a script of commands, and makes errors that name the image. */
interface Debugfs {
  /** A private directory for dumped contents and xattr values. */
  readonly scratch: string;
  run(commands: readonly string[]): Promise<string>;
  bad(why: string): A3sError;
}

/** One name from a directory listing, with what `ls -p` says about its inode. */
interface Listed {
  readonly path: string;
  readonly ino: number;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
}

/** What `dump` and `ea_get` brought back, by inode number. */
interface Fetched {
  readonly contentFile: ReadonlyMap<number, string>;
  readonly symlinkTarget: ReadonlyMap<number, string>;
  readonly xattrs: ReadonlyMap<number, Map<string, Uint8Array>>;
}

/** Every name in the image, the root first: `ls -p` of each directory, one debugfs run per level of the tree. */
async function listNames(d: Debugfs): Promise<Listed[]> {
  const listed: Listed[] = [];
  const visitedDirs = new Set<number>();
  let level: { ino: number; path: string }[] = [{ ino: ROOT_INO, path: "/" }];
  let rootRecord: Listed | undefined;
  while (level.length > 0) {
    for (const dir of level) {
      if (visitedDirs.has(dir.ino)) throw d.bad(`directory inode ${dir.ino} is reached twice (a loop)`);
      visitedDirs.add(dir.ino);
    }
    const out = await d.run(level.map((dir) => `ls -p <${dir.ino}>`));
    const next: { ino: number; path: string }[] = [];
    let at = 0;
    for (const dir of level) {
      const echo = `debugfs: ls -p <${dir.ino}>\n`;
      if (!out.startsWith(echo, at)) throw d.bad(`unexpected debugfs output listing inode ${dir.ino}`);
      at += echo.length;
      RECORD.lastIndex = at;
      for (let m = RECORD.exec(out); m; m = RECORD.exec(out)) {
        at = RECORD.lastIndex;
        const name = Buffer.from(m[5] as string, "latin1").toString("utf8");
        const rec = { ino: Number(m[1]), mode: parseInt(m[2] as string, 8), uid: Number(m[3]) >>> 0, gid: Number(m[4]) >>> 0 };
        if (name === ".") {
          if (dir.ino === ROOT_INO) rootRecord = { path: "/", ...rec };
          continue;
        }
        if (name === ".." || rec.ino === 0) continue;
        if (name === "" || name.includes("\0")) throw d.bad(`directory ${dir.path} has an invalid name`);
        const path = dir.path === "/" ? `/${name}` : `${dir.path}/${name}`;
        listed.push({ path, ...rec });
        if ((rec.mode & 0o170000) === 0o040000) next.push({ ino: rec.ino, path });
        if (listed.length > MAX_ENTRIES) throw d.bad(`more than ${MAX_ENTRIES} entries`);
      }
      if (out[at] === "\n") at++;
    }
    if (at !== out.length) throw d.bad("debugfs printed more than the listings");
    level = next;
  }
  if (!rootRecord) throw d.bad("the root directory could not be listed");
  return [rootRecord, ...listed];
}

/** `stat` of every inode once, in one debugfs run. */
async function statInodes(d: Debugfs, all: readonly Listed[]): Promise<Map<number, InodeDetails>> {
  const inodes = [...new Set(all.map((e) => e.ino))];
  const sections = splitSections(await d.run(inodes.map((ino) => `stat <${ino}>`)), "stat", inodes, d.bad);
  const details = new Map<number, InodeDetails>();
  inodes.forEach((ino, k) => details.set(ino, parseStat(sections[k] as string, ino, d.bad)));
  return details;
}

/** File contents, slow symlink targets and xattr values, with `dump` and `ea_get -f` into the scratch directory (one run). */
async function fetchContents(d: Debugfs, all: readonly Listed[], details: ReadonlyMap<number, InodeDetails>): Promise<Fetched> {
  const fetch: { command: string; file: string; apply: (data: Buffer) => void }[] = [];
  const contentFile = new Map<number, string>();
  const symlinkTarget = new Map<number, string>();
  const xattrs = new Map<number, Map<string, Uint8Array>>();
  for (const e of all) {
    const info = details.get(e.ino) as InodeDetails;
    if (contentFile.has(e.ino) || symlinkTarget.has(e.ino) || xattrs.has(e.ino)) continue;
    const type = e.mode & 0o170000;
    const file = join(d.scratch, String(e.ino));
    if (type === 0o100000) {
      contentFile.set(e.ino, file);
      fetch.push({ command: `dump <${e.ino}> "${file}"`, file, apply: () => undefined });
    } else if (type === 0o120000) {
      if (info.fastLink !== undefined) symlinkTarget.set(e.ino, info.fastLink);
      else fetch.push({ command: `dump <${e.ino}> "${file}"`, file, apply: (b) => symlinkTarget.set(e.ino, b.toString("utf8")) });
    }
    const attrs = new Map<string, Uint8Array>();
    xattrs.set(e.ino, attrs);
    info.xattrNames.forEach((name, k) => {
      const valueFile = `${file}.x${k}`;
      fetch.push({
        command: `ea_get -f "${valueFile}" <${e.ino}> "${name.replaceAll('"', '""')}"`,
        file: valueFile,
        apply: (b) => attrs.set(name, b),
      });
    });
  }
  if (fetch.length > 0) await d.run(fetch.map((f) => f.command));
  for (const f of fetch) {
    const data = await readFile(f.file).catch(() => {
      throw d.bad(`debugfs could not carry out: ${f.command}`);
    });
    f.apply(data);
  }
  return { contentFile, symlinkTarget, xattrs };
}

/** The tree: each name in listing order, a later name of an inode as a hardlink to its first. */
async function buildTree(d: Debugfs, all: readonly Listed[], details: ReadonlyMap<number, InodeDetails>, fetched: Fetched): Promise<RootfsTree> {
  const tree = new RootfsTree();
  const firstName = new Map<number, string>();
  for (const e of all) {
    const info = details.get(e.ino) as InodeDetails;
    const meta: MetadataInit = { mode: e.mode & 0o7777, uid: e.uid, gid: e.gid, mtime: info.mtime, xattrs: fetched.xattrs.get(e.ino) ?? new Map() };
    const type = e.mode & 0o170000;
    const seen = firstName.get(e.ino);
    if (seen !== undefined && type !== 0o040000) {
      tree.addHardlink(e.path, seen);
      continue;
    }
    firstName.set(e.ino, e.path);
    if (type === 0o040000) tree.addDirectory(e.path, meta);
    else if (type === 0o100000) {
      const file = fetched.contentFile.get(e.ino) as string;
      const size = (await stat(file)).size;
      if (size !== info.size) throw d.bad(`debugfs dumped ${size} bytes of ${e.path}, whose size is ${info.size}`);
      tree.addFile(e.path, { type: "hostFile", path: file, size }, meta);
    } else if (type === 0o120000) {
      const target = fetched.symlinkTarget.get(e.ino);
      if (!target || target.includes("\0")) throw d.bad(`symlink ${e.path} has no valid target`);
      tree.addSymlink(e.path, target, meta);
    } else if (type === 0o020000 || type === 0o060000) {
      if (!info.device) throw d.bad(`device ${e.path} has no device numbers`);
      tree.addDevice(e.path, type === 0o020000 ? "char" : "block", info.device.major, info.device.minor, meta);
    } else if (type === 0o010000) tree.addFifo(e.path, meta);
    // Sockets (0140000) are runtime objects, never part of a rootfs: skipped, as the other readers do.
  }
  return tree;
}

const ROOT_INO = 2;
const MAX_ENTRIES = 10_000_000;

/** One `ls -p` record: /INODE/MODE/UID/GID/NAME/SIZE/ — a name has no "/" but may hold newlines. */
const RECORD = /\/(\d+)\/([0-7]+)\/(-?\d+)\/(-?\d+)\/([^/]*)\/(\d*)\/\n/y;

interface InodeDetails {
  readonly size: number;
  readonly mtime: number;
  readonly device?: { major: number; minor: number };
  readonly fastLink?: string;
  readonly xattrNames: readonly string[];
}

/**
 * Splits debugfs output into one section per command. The echoes
 * ("debugfs: stat <N>") must be exactly the commands sent, in order: text
 * inside a section (a fast symlink target is printed raw) that imitates an
 * echo makes the sequence differ, and the read is refused.
 */
function splitSections(out: string, command: string, inodes: readonly number[], bad: (why: string) => Error): string[] {
  const echo = new RegExp(`^debugfs: ${command} <(\\d+)>\\n`, "gm");
  const starts: { ino: number; at: number; body: number }[] = [];
  for (let m = echo.exec(out); m; m = echo.exec(out)) starts.push({ ino: Number(m[1]), at: m.index, body: echo.lastIndex });
  if (starts.length !== inodes.length || starts.some((s, k) => s.ino !== inodes[k]) || (starts[0]?.at ?? 0) !== 0) {
    throw bad(`debugfs ${command} output does not match the commands sent`);
  }
  return starts.map((s, k) => out.slice(s.body, starts[k + 1]?.at ?? out.length));
}

function parseStat(s: string, ino: number, bad: (why: string) => Error): InodeDetails {
  const head = /^Inode: (\d+) /.exec(s);
  if (!head || Number(head[1]) !== ino) throw bad(`debugfs could not stat inode ${ino}`);
  const size = /\bSize: (\d+)\n/.exec(s);
  const mtime = /^ mtime: 0x([0-9a-f]{8})(?::([0-9a-f]{8}))?/m.exec(s);
  if (!size || !mtime) throw bad(`debugfs stat of inode ${ino} lacks a size or mtime`);
  // The low 32 bits are signed; with extra fields, the two low bits of the
  // extra word extend the seconds to 34 bits (years up to 2446).
  const lo = parseInt(mtime[1] as string, 16) | 0;
  const epochBits = mtime[2] === undefined ? 0 : parseInt(mtime[2], 16) & 3;
  const dev = /Device major\/minor number: (\d+):(\d+)/.exec(s);
  const fileSize = Number(size[1]);
  const xattrNames: string[] = [];
  const xattrBlock = s.split("\nExtended attributes:\n")[1];
  if (xattrBlock !== undefined) {
    for (const line of xattrBlock.split("\n")) {
      const m = /^ {2}(.+?) \((\d+)\)(?: = .*)?$/.exec(line);
      if (!m) break;
      const name = unescapeOctal(m[1] as string);
      // system.data holds inline file data, which dump already returns.
      if (name !== "system.data") xattrNames.push(name);
    }
  }
  let fastLink: string | undefined;
  const fast = s.indexOf('\nFast link dest: "');
  if (fast >= 0) {
    // Printed raw, exactly i_size bytes long: take that many, whatever they are.
    const from = fast + '\nFast link dest: "'.length;
    fastLink = Buffer.from(s.slice(from, from + fileSize), "latin1").toString("utf8");
  }
  return {
    size: fileSize,
    mtime: lo + epochBits * 2 ** 32,
    ...(dev ? { device: { major: Number(dev[1]), minor: Number(dev[2]) } } : {}),
    ...(fastLink === undefined ? {} : { fastLink }),
    xattrNames,
  };
}

/** debugfs writes non-printable bytes of xattr names as "\ooo". */
function unescapeOctal(s: string): string {
  const latin1 = s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8) & 0xff));
  return Buffer.from(latin1, "latin1").toString("utf8");
}
