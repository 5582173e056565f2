import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { lstatSync, readdirSync, readFileSync, readlinkSync, type BigIntStats } from "node:fs";
import { join } from "node:path";
import type { ObservedEntry } from "./image-sample.js";

/**
 * Reads a directory that an independent tool (GNU tar, GNU cpio) extracted,
 * as path → what a reader sees, in the shape `expectedView` gives for a tree,
 * so `imageDifferences` can compare the two.
 */
export function observeDirectory(root: string, opts: { xattrs: boolean }): Map<string, ObservedEntry> {
  const out = new Map<string, ObservedEntry>();
  const visit = (host: string, path: string): void => {
    const st = lstatSync(host, { bigint: true });
    const kind = kindOf(st);
    const o: ObservedEntry = {
      kind,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      mtime: Number(st.mtimeMs / 1000n),
      identity: String(st.ino),
    };
    if (opts.xattrs) o.xattrs = readXattrs(host);
    if (kind === "file") o.sha256 = createHash("sha256").update(readFileSync(host)).digest("hex");
    if (kind === "symlink") o.target = readlinkSync(host);
    if (kind === "char" || kind === "block") {
      const major = ((st.rdev >> 8n) & 0xfffn) | ((st.rdev >> 32n) & ~0xfffn);
      const minor = (st.rdev & 0xffn) | ((st.rdev >> 12n) & ~0xffn);
      o.rdev = `${major}:${minor}`;
    }
    out.set(path, o);
    if (kind === "directory") {
      for (const name of readdirSync(host).sort()) visit(join(host, name), path === "/" ? `/${name}` : `${path}/${name}`);
    }
  };
  visit(root, "/");
  return out;
}

function kindOf(st: BigIntStats): ObservedEntry["kind"] {
  if (st.isFile()) return "file";
  if (st.isDirectory()) return "directory";
  if (st.isSymbolicLink()) return "symlink";
  if (st.isCharacterDevice()) return "char";
  if (st.isBlockDevice()) return "block";
  if (st.isFIFO()) return "fifo";
  throw new Error("unexpected file type (socket?)");
}

/** Every xattr of one name (not followed), name → hex value, read with getfattr. */
export function readXattrs(host: string): Record<string, string> {
  const r = spawnSync("getfattr", ["-h", "-d", "-m", "-", "-e", "hex", "--absolute-names", host], { encoding: "utf8" });
  const out: Record<string, string> = {};
  for (const line of r.stdout.split("\n")) {
    const m = /^([^#=][^=]*)=0x([0-9a-f]*)$/.exec(line);
    if (m) out[m[1] as string] = m[2] as string;
  }
  return out;
}
