import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { A3sError } from "../../errors.js";
import type { RootfsTree, TreeEntry } from "../../tree/index.js";
import { DOCTOR_HINT, hostCommand, requireTool, runToolCommand } from "../../util/host-tool.js";
import { runningAsRoot } from "../../util/running-as-root.js";
import { materialiseTree } from "../dir/index.js";
import {
  explainImageToolFailure,
  listSome,
  mksquashfsCapabilities,
  toolEnv,
  treeFacts,
  withScratchDir,
  type ImageWriterOptions,
  type TreeFacts,
} from "../image/index.js";
import { tarFeed } from "../tar/index.js";

/**
 * squashfs compression. "zstd" is the default: it decompresses several times
 * faster than gzip at a better ratio, and Debian's kernels (and most distro
 * kernels since 4.14) have CONFIG_SQUASHFS_ZSTD. "gzip" is the one every
 * squashfs-capable kernel reads; xz is the smallest and slowest.
 */
export type SquashfsCompression = "zstd" | "gzip" | "xz" | "lz4" | "lzo";

/**
 * The zstd level written (`-Xcompression-level`), chosen by measurement
 * rather than left at mksquashfs's default of 15. On the Debian bookworm
 * minbase (120 MB of tar; squashfs-tools 4.6.1, 2 cores, one run each):
 *
 *     level 15 (mksquashfs's default)  35.1 MB   15.4 s CPU
 *     level 6                          38.0 MB    1.2 s
 *     level 3 (zstd's own default)     40.4 MB    0.5 s
 *     level 1                          42.7 MB    0.4 s
 *     lz4 (for comparison)             56.8 MB    0.3 s
 *
 * Level 15 costs thirty times the CPU of level 3 for an image 13 % smaller,
 * and zstd decompresses at the same speed whatever the level, so the guest
 * reads a level-3 image as fast as a level-15 one. lz4 saves nothing on the
 * build over zstd at level 1 and is a third larger. A boot image is rebuilt
 * far more often than it is shipped, so level 3 it is; the level is fixed,
 * so the image stays byte-identical per tree.
 */
export const SQUASHFS_ZSTD_LEVEL = 3;

export interface SquashfsWriterOptions extends ImageWriterOptions {
  readonly compression?: SquashfsCompression;
}

export interface SquashfsImageOptions extends SquashfsWriterOptions {
  /** SOURCE_DATE_EPOCH: the superblock's time. */
  readonly epoch: number;
}

/**
 * Writes `tree` as a squashfs image at `path` with mksquashfs.
 *
 * How the tree gets in:
 * - squashfs-tools >= 4.6 (the host's on Debian 13, else Debian 13's copy
 *   provisioned into the cache: `opts.tools`, provision/image-tools.ts):
 *   this project's tar stream on stdin (`-tar`, what sqfstar does), with
 *   the root directory's mode, owner and time given by -root-* (a tarball's
 *   "./" entry is ignored by mksquashfs). Exact for everything, root or not.
 * - older squashfs-tools, as root: a staging directory written exactly by
 *   materialiseTree. (4.5.1's `-tar` would do, except that it stamps the
 *   root with the wall clock and the caller's uid: not reproducible.)
 * - older squashfs-tools, not root: the staging directory has exact content,
 *   modes, mtimes, links, fifos and user.* xattrs; owners and device nodes
 *   come from a pseudo file (`M` modifies a file's mode/owner/time, `C`/`B`
 *   create devices) and, for directories, from actions (`guid(u,g)@...`),
 *   because 4.5's pseudo `M` on a directory clashes with any pseudo entry
 *   below it. xattrs other than user.* cannot be written that way: an error.
 *
 * Times: -mkfs-time stamps the superblock with the epoch; inode mtimes are
 * the tree's. SOURCE_DATE_EPOCH is removed from mksquashfs's environment,
 * where it would overwrite every mtime. Output is byte-identical per tree
 * (squashfs has no UUID; -reproducible orders everything).
 * NFS export tables are not written (-no-exports): a rootfs is never exported.
 */
export async function writeSquashfsImage(tree: RootfsTree, path: string, opts: SquashfsImageOptions): Promise<void> {
  const command = opts.tools?.mksquashfs ?? hostCommand(requireTool("mksquashfs", "squashfs-tools", undefined, opts.toolDirs));
  const mksquashfs = command.label;
  const caps = await mksquashfsCapabilities(command);
  const compression = opts.compression ?? "zstd";
  if (!caps.compressors.includes(compression)) {
    throw new A3sError(
      "ETOOL",
      `${mksquashfs} has no ${compression} compressor (it has: ${caps.compressors.join(", ") || "none"})`,
      { subject: mksquashfs, hint: "choose another squashfs compression" },
    );
  }
  const privileged = opts.privileged ?? runningAsRoot();
  const facts = treeFacts(tree);
  const root = tree.root;
  const common = [
    "-noappend",
    "-no-exports",
    "-comp",
    compression,
    ...(compression === "zstd" ? ["-Xcompression-level", String(SQUASHFS_ZSTD_LEVEL)] : []),
    "-mkfs-time",
    String(opts.epoch),
    facts.hasXattrs ? "-xattrs" : "-no-xattrs",
    "-quiet",
    "-no-progress",
    "-exit-on-error",
  ];
  const rootAttrs = [
    "-root-mode",
    (root.mode & 0o7777).toString(8),
    "-root-uid",
    String(root.uid),
    "-root-gid",
    String(root.gid),
    "-root-time",
    String(root.mtime),
  ];
  const env = toolEnv();
  const signal = opts.signal;
  const run = async (args: string[], feed?: (stdin: NodeJS.WritableStream) => Promise<void>): Promise<void> => {
    try {
      await runToolCommand(command, args, { env, signal, ...(feed ? { feed } : {}) });
    } catch (e) {
      throw await explainImageToolFailure(e, { format: "squashfs", path });
    }
  };

  if (caps.tarInput) {
    await run(["-", path, "-tar", ...common, ...rootAttrs], tarFeed(tree, signal));
    return;
  }
  if (!privileged && facts.privilegedXattrs.length > 0) {
    throw new A3sError(
      "ETOOL",
      `${mksquashfs} ${caps.version} cannot read a tarball exactly (squashfs-tools 4.6 or newer can) and this process ` +
        `is not root, so xattrs other than user.* cannot be written: ${listSome(facts.privilegedXattrs)}`,
      { subject: mksquashfs, hint: `install squashfs-tools >= 4.6 (Debian 13), or build as root   (${DOCTOR_HINT})` },
    );
  }
  await withScratchDir(
    "squashfs-",
    async (scratch) => {
      const staging = join(scratch, "root");
      await materialiseTree(tree, staging, { privileged, signal });
      const extra: string[] = [];
      if (!privileged) {
        const pseudo = join(scratch, "pseudo");
        const actions = join(scratch, "actions");
        await writeFile(pseudo, pseudoDefinitions(facts));
        await writeFile(actions, directoryOwnerActions(facts));
        extra.push("-pf", pseudo, "-action-file", actions, ...rootAttrs);
      }
      await run([staging, path, ...common, ...extra]);
    },
    opts.scratchDir,
  );
}

/**
 * Pseudo definitions giving every non-directory inode its exact mode, owner
 * and mtime (`M`), and creating device nodes (`C`/`B`), which an unprivileged
 * staging directory cannot hold. Names are relative to the root with every
 * byte outside [A-Za-z0-9._/+-] backslash-escaped, as the pseudo parser reads
 * them; a newline cannot be escaped there and is refused.
 */
function pseudoDefinitions(facts: TreeFacts): string {
  const lines: string[] = [];
  for (const e of facts.entries) {
    if (e.kind === "directory" || e.kind === "hardlink") continue;
    const i = e.inode;
    const name = pseudoName(e);
    const mode = (i.mode & 0o7777).toString(8);
    if (i.kind === "char" || i.kind === "block") {
      lines.push(`${name} ${i.kind === "char" ? "C" : "B"} ${i.mtime} ${mode} ${i.uid} ${i.gid} ${i.major} ${i.minor}`);
    } else {
      lines.push(`${name} M ${i.mtime} ${mode} ${i.uid} ${i.gid}`);
    }
  }
  return lines.join("\n") + "\n";
}

/**
 * Actions giving each directory its owner: the most common owner for all
 * directories by type, then one `pathname()` action for each directory that
 * differs. A pathname is an fnmatch pattern inside a quoted action string, so
 * it is escaped twice: each special byte for fnmatch, then `\` and `"` for the
 * action parser.
 */
function directoryOwnerActions(facts: TreeFacts): string {
  const dirs = facts.entries.filter((e) => e.kind === "directory" && e.path !== "/");
  const counts = new Map<string, number>();
  for (const d of dirs) {
    const key = `${d.inode.uid},${d.inode.gid}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const common = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? "0,0";
  const lines = [`guid(${common})@type(d)`];
  for (const d of dirs) {
    const key = `${d.inode.uid},${d.inode.gid}`;
    if (key === common) continue;
    refuseNewline(d);
    const pattern = d.path.slice(1).replace(/[^A-Za-z0-9/]/g, (c) => "\\" + c);
    lines.push(`guid(${key})@pathname("${pattern.replace(/[\\"]/g, (c) => "\\" + c)}")`);
  }
  return lines.join("\n") + "\n";
}

function pseudoName(e: TreeEntry): string {
  refuseNewline(e);
  return e.path.slice(1).replace(/[^A-Za-z0-9._/+-]/g, (c) => "\\" + c);
}

function refuseNewline(e: TreeEntry): void {
  if (/[\n\r]/.test(e.path)) {
    throw new A3sError("EPATH", `mksquashfs pseudo files cannot name ${JSON.stringify(e.path)} (it contains a newline)`, {
      subject: e.path,
      hint: "build as root, or with squashfs-tools >= 4.6",
    });
  }
}
