import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { observeDirectory, readXattrs } from "./extracted-tree.js";
import type { ObservedEntry } from "./image-sample.js";
import { tempDir } from "./temp-dir.js";

/**
 * Independent readers: each turns an image back into path → metadata using
 * the format's own tools (debugfs, fsck.erofs/dump.erofs, unsquashfs), never
 * this project's writers. They run as root in the tests, so extraction keeps
 * owners.
 */

const UTC = { ...process.env, TZ: "UTC", LC_ALL: "C" };

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

// ---- ext4: debugfs -------------------------------------------------------

function debugfsScript(image: string, commands: string[]): string[] {
  const dir = tempDir("a3s-debugfs-");
  const script = join(dir, "cmds");
  writeFileSync(script, commands.join("\n") + "\n");
  const out = execFileSync("debugfs", ["-f", script, image], { encoding: "utf8", env: UTC, stdio: ["ignore", "pipe", "ignore"], maxBuffer: 1 << 28 });
  // Each command's output follows its echo "debugfs: COMMAND".
  const sections = out.split(/^debugfs: .*$/m).slice(1);
  if (sections.length !== commands.length) throw new Error(`debugfs answered ${sections.length} of ${commands.length} commands`);
  return sections;
}

const q = (s: string): string => `"${s.replaceAll('"', '""')}"`;

const EXT4_TYPES: Record<string, ObservedEntry["kind"]> = {
  regular: "file",
  directory: "directory",
  symlink: "symlink",
  "character special": "char",
  "block special": "block",
  FIFO: "fifo",
};

/** Reads an ext4 image with debugfs: `ls -p` to find names, `stat`, `dump` and `ea_get` for the rest. */
export function readExt4(image: string): Map<string, ObservedEntry> {
  const paths = ["/"];
  for (let level = ["/"]; level.length > 0; ) {
    const listings = debugfsScript(image, level.map((d) => `ls -p ${q(d)}`));
    const next: string[] = [];
    listings.forEach((listing, n) => {
      const dir = level[n] as string;
      for (const line of listing.split("\n")) {
        const m = /^\/(\d+)\/(\d+)\/-?\d+\/-?\d+\/(.*?)\/(\d*)\/$/.exec(line);
        // Empty slots (inode 0, as in a pre-sized lost+found) and the dot entries are not names.
        if (!m || m[1] === "0" || m[3] === "" || m[3] === "." || m[3] === "..") continue;
        const path = dir === "/" ? `/${m[3]}` : `${dir}/${m[3]}`;
        paths.push(path);
        if ((parseInt(m[2] as string, 8) & 0o170000) === 0o040000) next.push(path);
      }
    });
    level = next;
  }

  const out = new Map<string, ObservedEntry>();
  const stats = debugfsScript(image, paths.map((p) => `stat ${q(p)}`));
  const work = tempDir("a3s-ext4-read-");
  const fetch: { command: string; file: string; apply: (data: Buffer) => void }[] = [];
  paths.forEach((path, n) => {
    const s = stats[n] as string;
    const field = (re: RegExp): string => {
      const m = re.exec(s);
      if (!m) throw new Error(`debugfs stat ${path}: no ${re}`);
      return m[1] as string;
    };
    const kind = EXT4_TYPES[field(/Type: (.+?)\s{2,}/)] as ObservedEntry["kind"];
    const o: ObservedEntry = {
      kind,
      mode: parseInt(field(/Mode:\s+(\d+)/), 8),
      uid: Number(field(/User:\s+(-?\d+)/)) >>> 0,
      gid: Number(field(/Group:\s+(-?\d+)/)) >>> 0,
      mtime: parseInt(field(/ mtime: 0x([0-9a-f]+)/), 16),
      identity: field(/Inode: (\d+)/),
      xattrs: {},
    };
    if (kind === "char" || kind === "block") {
      const m = /Device major\/minor number: (\d+):(\d+)/.exec(s);
      o.rdev = `${parseInt(m?.[1] ?? "", 10)}:${parseInt(m?.[2] ?? "", 10)}`;
    }
    const fast = /Fast link dest: "(.*)"/.exec(s);
    if (kind === "symlink" && fast) o.target = fast[1];
    const file = join(work, String(n));
    if (kind === "file" || (kind === "symlink" && !fast)) {
      fetch.push({
        command: `dump ${q(path)} ${q(file)}`,
        file,
        apply: (d) => (kind === "file" ? (o.sha256 = sha256(d)) : (o.target = d.toString())),
      });
    }
    const xattrSection = s.split("Extended attributes:\n")[1] ?? "";
    for (const line of xattrSection.split("\n")) {
      const m = /^ {2}(\S+) \(\d+\)/.exec(line);
      if (!m) break;
      const name = m[1] as string;
      const valueFile = `${file}-${name}`;
      fetch.push({ command: `ea_get -f ${q(valueFile)} ${q(path)} ${name}`, file: valueFile, apply: (d) => ((o.xattrs as Record<string, string>)[name] = d.toString("hex")) });
    }
    out.set(path, o);
  });
  if (fetch.length > 0) {
    debugfsScript(image, fetch.map((f) => f.command));
    for (const f of fetch) f.apply(readFileSync(f.file));
  }
  return out;
}

/** `e2fsck -fn`: the exit status and what it printed. */
export function e2fsck(image: string): { status: number; output: string } {
  const r = spawnSync("e2fsck", ["-fn", image], { encoding: "utf8", env: UTC });
  return { status: r.status ?? -1, output: r.stdout + r.stderr };
}

// ---- erofs: fsck.erofs --extract, dump.erofs, and the on-disk inode ------

const EROFS_XATTR_PREFIX: Record<number, string> = {
  1: "user.",
  2: "system.posix_acl_access",
  3: "system.posix_acl_default",
  4: "trusted.",
  5: "lustre.",
  6: "security.",
};

/**
 * Mode and xattrs of one erofs inode, read from the image bytes. fsck.erofs
 * 1.5 drops setuid bits and xattrs on extraction and dump.erofs prints only
 * the low permission bits, so these two come from the on-disk inode
 * (erofs_inode_compact/extended and the xattr ibody, per the kernel's
 * erofs_fs.h).
 */
function erofsInodeDetails(img: Buffer, nid: number): { mode: number; xattrs: Record<string, string> } {
  const sb = 1024;
  const blkszbits = img.readUInt8(sb + 12);
  const metaBlk = img.readUInt32LE(sb + 40);
  const xattrBlk = img.readUInt32LE(sb + 44);
  const off = metaBlk * 2 ** blkszbits + nid * 32;
  const format = img.readUInt16LE(off);
  const icount = img.readUInt16LE(off + 2);
  const mode = img.readUInt16LE(off + 4);
  const inodeSize = format & 1 ? 64 : 32;
  const xattrs: Record<string, string> = {};
  if (icount > 0) {
    const body = off + inodeSize;
    const end = body + 12 + 4 * (icount - 1);
    const shared = img.readUInt8(body + 4);
    const readEntry = (at: number): number => {
      const nameLen = img.readUInt8(at);
      const index = img.readUInt8(at + 1);
      const valueSize = img.readUInt16LE(at + 2);
      const name = (EROFS_XATTR_PREFIX[index] ?? `?${index}?`) + img.toString("latin1", at + 4, at + 4 + nameLen);
      xattrs[name] = img.subarray(at + 4 + nameLen, at + 4 + nameLen + valueSize).toString("hex");
      return Math.ceil((4 + nameLen + valueSize) / 4) * 4;
    };
    for (let s = 0; s < shared; s++) readEntry(xattrBlk * 2 ** blkszbits + img.readUInt32LE(body + 12 + 4 * s) * 4);
    for (let at = body + 12 + 4 * shared; at < end; ) at += readEntry(at);
  }
  return { mode: mode & 0o7777, xattrs };
}

/** Reads an erofs image: extraction for names/kinds/content/devices, dump.erofs for nid/owner/mtime. */
export function readErofs(image: string): Map<string, ObservedEntry> {
  const dir = join(tempDir("a3s-erofs-read-"), "root");
  execFileSync("fsck.erofs", [`--extract=${dir}`, image], { stdio: ["ignore", "ignore", "pipe"] });
  const out = observeDirectory(dir, { xattrs: false });
  const img = readFileSync(image);
  for (const [path, o] of out) {
    const info = execFileSync("dump.erofs", [`--path=${path}`, image], { encoding: "utf8", env: UTC });
    const nid = Number(/NID: (\d+)/.exec(info)?.[1]);
    o.identity = String(nid);
    o.uid = Number(/Uid: (\d+)/.exec(info)?.[1]);
    o.gid = Number(/Gid: (\d+)/.exec(info)?.[1]);
    const stamp = /Timestamp: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)/.exec(info)?.[1] ?? "";
    o.mtime = Date.parse(stamp.replace(" ", "T") + "Z") / 1000;
    const details = erofsInodeDetails(img, nid);
    o.mode = o.kind === "symlink" ? 0o777 : details.mode;
    o.xattrs = details.xattrs;
  }
  return out;
}

// ---- squashfs: unsquashfs -------------------------------------------------

/** Reads a squashfs image: `unsquashfs -d` (owners kept as root, hardlinks kept) plus getfattr. */
export function readSquashfs(image: string): Map<string, ObservedEntry> {
  const dir = join(tempDir("a3s-sqfs-read-"), "root");
  execFileSync("unsquashfs", ["-no-progress", "-d", dir, image], { stdio: ["ignore", "ignore", "pipe"] });
  const out = observeDirectory(dir, { xattrs: false });
  for (const [path, o] of out) o.xattrs = o.kind === "symlink" ? {} : readXattrs(path === "/" ? dir : dir + path);
  return out;
}

/** `unsquashfs -lln`: path → "mode-string uid/gid" as the tool lists it, numerically. */
export function listSquashfs(image: string): Map<string, string> {
  const text = execFileSync("unsquashfs", ["-lln", "-UTC", image], { encoding: "utf8", env: UTC });
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^(\S{10}) (\d+)\/(\d+) .*? \d{4}-\d\d-\d\d \d\d:\d\d squashfs-root(.*?)(?: -> .*)?$/.exec(line);
    if (m) out.set(m[4] || "/", `${m[1]} ${m[2]}/${m[3]}`);
  }
  return out;
}
