import { lstat, readFile } from "node:fs/promises";
import { A3sError } from "../../errors.js";
import type { RootfsTree, TreeEntry } from "../../tree/index.js";

/**
 * The sidecar a `dir` output writes beside the directory, as
 * PATH.a3s-metadata.json (docs/formats.md describes it). It has two jobs:
 * - it lists every entry with the metadata the tree meant it to have, which
 *   a non-root build cannot put on disk (owners, device nodes, security
 *   xattrs);
 * - it is a3s-rootfs's mark on the directory: `directory` records the
 *   identity of the directory it was written with, so a later build knows
 *   that PATH is its own to replace, and that a directory someone put there
 *   since (another inode, or the same inode number born later) is not.
 *   The mark sits beside the tree, never inside it, where it would become
 *   part of the guest's "/".
 */
export interface MetadataSidecar {
  readonly format: "a3s-rootfs-metadata";
  readonly version: 1;
  /** The published directory's identity; absent in sidecars written before it was recorded. */
  readonly directory?: DirectoryIdentity;
  readonly entries: SidecarEntry[];
}

/**
 * Which directory on disk a sidecar belongs to: its device and inode numbers
 * and its birth time (nanoseconds, "0" where the filesystem keeps none), as
 * decimal strings because they can exceed 2^53. A rename keeps all three.
 */
export interface DirectoryIdentity {
  readonly dev: string;
  readonly ino: string;
  readonly birthtimeNs: string;
}

/** The identity of the directory at `path` (not following a final symlink). */
export async function directoryIdentity(path: string): Promise<DirectoryIdentity> {
  const st = await lstat(path, { bigint: true });
  return { dev: String(st.dev), ino: String(st.ino), birthtimeNs: String(st.birthtimeNs) };
}

/**
 * Whether the directory at `dirPath` is the one its sidecar was written
 * with: false when there is no sidecar, it is not ours, it records no
 * identity, or the directory is another one.
 */
export async function sidecarMarks(dirPath: string): Promise<boolean> {
  const raw = await readFile(sidecarPathFor(dirPath), "utf8").catch(() => undefined);
  if (raw === undefined) return false;
  let recorded: DirectoryIdentity | undefined;
  try {
    const sidecar = JSON.parse(raw) as Partial<MetadataSidecar>;
    if (sidecar.format !== "a3s-rootfs-metadata") return false;
    recorded = sidecar.directory;
  } catch {
    return false;
  }
  if (!recorded) return false;
  const now = await directoryIdentity(dirPath).catch(() => undefined);
  return now !== undefined && now.dev === recorded.dev && now.ino === recorded.ino && now.birthtimeNs === recorded.birthtimeNs;
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

export function buildSidecar(tree: RootfsTree, approximated: readonly TreeEntry[], directory?: DirectoryIdentity): MetadataSidecar {
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
  return { format: "a3s-rootfs-metadata", version: 1, ...(directory ? { directory } : {}), entries };
}

/**
 * Applies the sidecar at `sidecarPath`, if there is one, to a tree read from
 * its directory: ownership, modes, times and xattrs of each entry, and the
 * device nodes (and their other names) the directory could not hold.
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
    // Another name of such a device (in walk order, after its first name): the one kind of link the writer leaves out.
    const linked = e.kind === "hardlink" && e.approximated && e.link !== undefined ? tree.lookup(e.link, false) : undefined;
    if ((linked?.kind === "char" || linked?.kind === "block") && !tree.lookup(e.path, false)) {
      tree.addHardlink(e.path, e.link as string);
      continue;
    }
    const inode = tree.lookup(e.path, false);
    if (!inode || e.kind === "hardlink") continue;
    Object.assign(inode, m);
  }
}
