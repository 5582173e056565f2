import { lstatSync, readdirSync, readlinkSync, type Stats } from "node:fs";
import { lstat } from "node:fs/promises";
import { join } from "node:path";
import { A3sError } from "../../errors.js";
import { hostFileContent, RootfsTree, type MetadataInit } from "../../tree/index.js";
import { applySidecar, sidecarPathFor } from "./sidecar.js";

/** Linux's encoding of st_rdev (glibc's gnu_dev_major/minor). */
function deviceNumbers(rdev: number): { major: number; minor: number } {
  const r = BigInt(rdev);
  const major = Number(((r >> 8n) & 0xfffn) | ((r >> 32n) & ~0xfffn));
  const minor = Number((r & 0xffn) | ((r >> 12n) & ~0xffn));
  return { major, minor };
}

/**
 * Reads a rootfs directory on the host into a tree. Nothing is followed:
 * every name is lstat'ed, symlinks are recorded as links, and files are
 * referenced (not copied). Names sharing an inode become hardlinks. If the
 * directory has a metadata sidecar (written by a non-root `dir` output), its
 * ownership, modes, xattrs and device nodes are applied on top, so the tree
 * is the one that was built. Extended attributes on disk are not read (Node
 * has no xattr API); the sidecar carries them when there is one.
 *
 * The walk uses the synchronous calls on purpose: one promise per lstat
 * costs more than the lstat itself, and nothing else runs meanwhile.
 */
export async function readDirectoryTree(dir: string, opts: { epoch?: number } = {}): Promise<RootfsTree> {
  const top = await lstat(dir).catch(() => undefined);
  if (!top?.isDirectory()) throw new A3sError("ENOENT", `${dir} is not a directory`, { subject: dir });
  const tree = new RootfsTree(opts.epoch === undefined ? {} : { epoch: opts.epoch });
  const meta = (st: Stats): MetadataInit => ({
    mode: Number(st.mode) & 0o7777,
    uid: Number(st.uid),
    gid: Number(st.gid),
    mtime: Math.floor(Number(st.mtimeMs) / 1000),
  });
  tree.addDirectory("/", meta(top as Stats));
  const seenInodes = new Map<string, string>();

  // An explicit stack, not recursion: a directory nested deeper than the
  // call stack must meet the tree's depth bound, not a stack overflow.
  const pending: { hostDir: string; treeDir: string }[] = [{ hostDir: dir, treeDir: "/" }];
  while (pending.length > 0) {
    const { hostDir, treeDir } = pending.pop() as { hostDir: string; treeDir: string };
    const names = readdirSync(hostDir).sort();
    const subdirs: { hostDir: string; treeDir: string }[] = [];
    for (const name of names) {
      const hostPath = join(hostDir, name);
      const treePath = treeDir === "/" ? `/${name}` : `${treeDir}/${name}`;
      const st = lstatSync(hostPath);
      const m = meta(st);
      if (st.isDirectory()) {
        tree.addDirectory(treePath, m);
        subdirs.push({ hostDir: hostPath, treeDir: treePath });
        continue;
      }
      if (st.nlink > 1) {
        const key = `${st.dev}:${st.ino}`;
        const first = seenInodes.get(key);
        if (first) {
          tree.addHardlink(treePath, first);
          continue;
        }
        seenInodes.set(key, treePath);
      }
      if (st.isFile()) tree.addFile(treePath, hostFileContent(hostDir, name, st.size), m);
      else if (st.isSymbolicLink()) tree.addSymlink(treePath, readlinkSync(hostPath), m);
      else if (st.isCharacterDevice() || st.isBlockDevice()) {
        const { major, minor } = deviceNumbers(st.rdev);
        tree.addDevice(treePath, st.isCharacterDevice() ? "char" : "block", major, minor, m);
      } else if (st.isFIFO()) tree.addFifo(treePath, m);
      // Sockets are runtime objects, never part of a rootfs: skipped.
    }
    pending.push(...subdirs.reverse());
  }
  await applySidecar(tree, sidecarPathFor(dir));
  return tree;
}
