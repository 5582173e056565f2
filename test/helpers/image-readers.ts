import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readErofsImage } from "../../src/formats/erofs/index.js";
import { observeDirectory, readXattrs } from "./extracted-tree.js";
import type { ObservedEntry } from "./image-sample.js";
import { tempDir } from "./temp-dir.js";

/**
 * Independent readers: each turns an image back into path → metadata using
 * the format's own tools (debugfs, fsck.erofs/dump.erofs, unsquashfs), never
 * this project's writers (for erofs, see readErofs for the two fields the
 * tools cannot show). They run as root in the tests, so extraction keeps
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

// ---- erofs: fsck.erofs --extract and dump.erofs ----------------------------

/**
 * Reads an erofs image with erofs-utils: `fsck.erofs --extract` checks the
 * whole image and gives names, kinds, contents, symlink targets and device
 * numbers; `dump.erofs --path` gives each inode's NID (the hardlink
 * identity), owner, mtime and permission bits.
 *
 * erofs-utils 1.5 (Debian 12) shows neither the setuid, setgid and sticky
 * bits (dump.erofs prints "Access" masked to 0777, and fsck.erofs's chown
 * after chmod clears them on extraction) nor xattrs (fsck.erofs does not
 * extract them). Only for those two does this helper take the project's own
 * erofs reader (src/formats/erofs), and it first checks that reader against
 * dump.erofs on every field dump.erofs prints, for every inode: a reader that
 * misplaces inodes or misreads their metadata fails here, not silently.
 */
export async function readErofs(image: string): Promise<Map<string, ObservedEntry>> {
  const dir = join(tempDir("a3s-erofs-read-"), "root");
  execFileSync("fsck.erofs", [`--extract=${dir}`, image], { stdio: ["ignore", "ignore", "pipe"] });
  const out = observeDirectory(dir, { xattrs: false });
  const ours = await readErofsImage(image);
  try {
    for (const [path, o] of out) {
      const info = execFileSync("dump.erofs", [`--path=${path}`, image], { encoding: "utf8", env: UTC });
      const field = (re: RegExp): string => {
        const m = re.exec(info);
        if (!m) throw new Error(`dump.erofs --path=${path}: no ${re}`);
        return m[1] as string;
      };
      o.identity = field(/NID: (\d+)/);
      o.uid = Number(field(/Uid: (\d+)/));
      o.gid = Number(field(/Gid: (\d+)/));
      o.mtime = Date.parse(field(/Timestamp: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)/).replace(" ", "T") + "Z") / 1000;
      const permissions = parseInt(field(/Access: ([0-7]{4})\//), 8);
      const inode = ours.tree.lookup(path, false);
      if (!inode) throw new Error(`src/formats/erofs does not find ${path}, which fsck.erofs extracted`);
      const agree = (inode.mode & 0o777) === permissions && inode.uid === o.uid && inode.gid === o.gid && inode.mtime === o.mtime;
      if (!agree) throw new Error(`src/formats/erofs and dump.erofs disagree about ${path}: ${JSON.stringify(inode)} vs ${info}`);
      o.mode = o.kind === "symlink" ? 0o777 : inode.mode;
      o.xattrs = Object.fromEntries([...inode.xattrs].map(([k, v]) => [k, Buffer.from(v).toString("hex")]));
    }
  } finally {
    await ours.dispose();
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
