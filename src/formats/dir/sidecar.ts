import { readFile } from "node:fs/promises";
import { A3sError } from "../../errors.js";
import type { RootfsTree, TreeEntry } from "../../tree/index.js";

/**
 * The sidecar a non-root `dir` output writes beside the directory, as
 * PATH.a3s-metadata.json, because an unprivileged process cannot give files
 * away, make device nodes or set security xattrs. It lists every entry with
 * the metadata the tree meant it to have (docs/formats.md describes it).
 */
export interface MetadataSidecar {
  readonly format: "a3s-rootfs-metadata";
  readonly version: 1;
  readonly entries: SidecarEntry[];
}

export interface SidecarEntry {
  path: string;
  kind: TreeEntry["kind"];
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  link?: string;
  major?: number;
  minor?: number;
  /** Values base64-encoded. */
  xattrs?: Record<string, string>;
  /** True when the directory on disk does not carry this entry's metadata exactly. */
  approximated?: true;
}

export function sidecarPathFor(dirPath: string): string {
  return `${dirPath}.a3s-metadata.json`;
}

export function buildSidecar(tree: RootfsTree, approximated: readonly TreeEntry[]): MetadataSidecar {
  const inexact = new Set(approximated.map((e) => e.path));
  const entries = tree.entries().map((e): SidecarEntry => {
    const i = e.inode;
    const out: SidecarEntry = { path: e.path, kind: e.kind, mode: i.mode, uid: i.uid, gid: i.gid, mtime: i.mtime };
    if (e.kind === "hardlink") out.link = e.linkPath as string;
    else if (i.kind === "symlink") out.link = i.target;
    if (i.kind === "char" || i.kind === "block") {
      out.major = i.major;
      out.minor = i.minor;
    }
    if (i.xattrs.size > 0) {
      out.xattrs = Object.fromEntries([...i.xattrs].map(([k, v]) => [k, Buffer.from(v).toString("base64")]));
    }
    if (inexact.has(e.path)) out.approximated = true;
    return out;
  });
  return { format: "a3s-rootfs-metadata", version: 1, entries };
}

/**
 * Applies the sidecar at `sidecarPath`, if there is one, to a tree read from
 * its directory: ownership, modes, times and xattrs of each entry, and the
 * device nodes the directory could not hold.
 */
export async function applySidecar(tree: RootfsTree, sidecarPath: string): Promise<void> {
  const raw = await readFile(sidecarPath, "utf8").catch(() => undefined);
  if (raw === undefined) return;
  let sidecar: MetadataSidecar;
  try {
    sidecar = JSON.parse(raw) as MetadataSidecar;
  } catch (e) {
    throw new A3sError("ESIDECAR", `${sidecarPath} is not valid JSON`, { subject: sidecarPath, cause: e });
  }
  if (sidecar.format !== "a3s-rootfs-metadata" || sidecar.version !== 1) {
    throw new A3sError("ESIDECAR", `${sidecarPath} is not an a3s-rootfs metadata sidecar version 1`, {
      subject: sidecarPath,
    });
  }
  for (const e of sidecar.entries) {
    const xattrs = new Map(Object.entries(e.xattrs ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64")]));
    const m = { mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, xattrs };
    if ((e.kind === "char" || e.kind === "block") && !tree.lookup(e.path, false)) {
      tree.addDevice(e.path, e.kind, e.major ?? 0, e.minor ?? 0, m);
      continue;
    }
    const inode = tree.lookup(e.path, false);
    if (!inode || e.kind === "hardlink") continue;
    Object.assign(inode, m);
  }
}
