import { createWriteStream } from "node:fs";
import { chmod, copyFile, lchown, link, lutimes, mkdir, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import { A3sError } from "../errors.js";
import { openContent, type RootfsTree, type TreeEntry } from "../tree/index.js";
import { runTool } from "../util/host-tool.js";

export interface MaterialiseOptions {
  /**
   * Apply ownership, device nodes and privileged xattrs exactly. Needs root
   * (CAP_CHOWN, CAP_MKNOD, CAP_SETFCAP). Without it those are skipped and
   * reported, and the caller records them some other way.
   */
  readonly privileged: boolean;
}

export interface MaterialiseReport {
  /** Entries whose metadata could not be applied on disk (ownership, device nodes, xattrs). */
  readonly approximated: TreeEntry[];
}

/** xattr namespaces an unprivileged process may set on its own files. */
const UNPRIVILEGED_XATTR = /^user\./;

/**
 * Writes the tree under `target` (which must not exist). `target` is a fresh
 * directory we own, and every path below it comes from the tree's own walk,
 * whose names are single components with no "..", so nothing here can write
 * outside `target`.
 */
export async function materialiseTree(
  tree: RootfsTree,
  target: string,
  opts: MaterialiseOptions,
): Promise<MaterialiseReport> {
  const entries = tree.entries();
  const approximated: TreeEntry[] = [];
  await mkdir(target, { mode: 0o700 });
  const host = (p: string): string => (p === "/" ? target : target + p);

  for (const e of entries) {
    const p = host(e.path);
    const inode = e.inode;
    let exact = true;
    switch (e.kind) {
      case "directory":
        // Owner-writable until the final pass, so children can be created even
        // when the directory's own mode is read-only.
        if (e.path !== "/") await mkdir(p, { mode: 0o700 });
        break;
      case "file":
        if (inode.kind !== "file") break;
        if (inode.content.type === "hostFile") {
          await copyFile(inode.content.path, p);
          const size = (await stat(p)).size;
          if (size !== inode.content.size) {
            throw new A3sError("ECONTENT", `${inode.content.path} changed size while the rootfs was being written`, {
              subject: e.path,
            });
          }
        } else if (inode.content.type === "bytes") {
          await writeFile(p, inode.content.data);
        } else {
          await pipeline(openContent(inode.content, e.path), createWriteStream(p));
        }
        break;
      case "symlink":
        if (inode.kind === "symlink") await symlink(inode.target, p);
        break;
      case "hardlink":
        await link(host(e.linkPath as string), p);
        continue; // metadata belongs to the first name
      case "fifo":
        await runTool("mkfifo", ["-m", "600", p]);
        break;
      case "char":
      case "block":
        if (inode.kind !== "char" && inode.kind !== "block") break;
        if (!opts.privileged) {
          approximated.push(e);
          continue;
        }
        await runTool("mknod", ["-m", "600", p, e.kind === "char" ? "c" : "b", String(inode.major), String(inode.minor)]);
        break;
    }
    if (opts.privileged) await lchown(p, inode.uid, inode.gid);
    else if (inode.uid !== process.getuid?.() || inode.gid !== process.getgid?.()) exact = false;
    for (const [name, value] of inode.xattrs) {
      if (!opts.privileged && !UNPRIVILEGED_XATTR.test(name)) {
        exact = false;
        continue;
      }
      await runTool("setfattr", ["-h", "-n", name, "-v", "0x" + Buffer.from(value).toString("hex"), p]);
    }
    // chmod after chown: chown(2) clears setuid and setgid bits.
    if (e.kind !== "symlink" && e.kind !== "directory") await chmod(p, inode.mode);
    if (e.kind !== "directory") await lutimes(p, inode.mtime, inode.mtime);
    if (!exact) approximated.push(e);
  }

  // Directories last and deepest first: creating children changes a
  // directory's mtime, and a read-only mode would stop those creations.
  for (let i = entries.length - 1; i >= 0; i--) {
    const e = entries[i] as TreeEntry;
    if (e.kind !== "directory") continue;
    const p = host(e.path);
    await chmod(p, e.inode.mode);
    await utimes(p, e.inode.mtime, e.inode.mtime);
  }
  return { approximated };
}
