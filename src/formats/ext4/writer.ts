import { createWriteStream } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { A3sError } from "../../errors.js";
import type { RootfsTree } from "../../tree/index.js";
import { DOCTOR_HINT, requireTool, runTool, ToolFailure } from "../../util/host-tool.js";
import { runningAsRoot } from "../../util/running-as-root.js";
import { materialiseTree } from "../dir/index.js";
import {
  diskProblem,
  explainImageToolFailure,
  imageUuid,
  mke2fsCapabilities,
  toolComplaint,
  toolEnv,
  treeFacts,
  withScratchDir,
  type ImageWriterOptions,
  type TreeFacts,
} from "../image/index.js";
import { tarFeed, tarStream } from "../tar/index.js";
import { EXT4_BLOCK_SIZE, EXT4_INODE_SIZE, ext4ImageSize } from "./image-size.js";

/**
 * ext4 features, listed in full rather than taken from the host's
 * mke2fs.conf, so every machine formats the same filesystem.
 *
 * No journal: the root is mounted read-only, so nothing is ever written that
 * a journal would protect, and a journal costs at least 1024 blocks (4 MiB),
 * close to half of a 10 MB rootfs. `-o ro` mounts work the same either way.
 * No resize_inode either (the image is never grown online), no orphan_file
 * (nothing is unlinked on a read-only fs). extra_isize and 256-byte inodes
 * give nanosecond/2038-safe times and room for security.capability inside
 * the inode.
 *
 * metadata_csum, which keeps corruption detectable, is in the finished image
 * but not in this list: it is switched on after mke2fs has filled the image
 * (see enableMetadataChecksums), because with it on, mke2fs checksums every
 * directory block each time it looks a name up while it fills the image,
 * and that took 40 % of its time (140 of 330 ms for a Debian minbase).
 */
const MKE2FS_FEATURES = [
  "none",
  "ext_attr",
  "dir_index",
  "filetype",
  "extent",
  "flex_bg",
  "sparse_super",
  "large_file",
  "huge_file",
  "dir_nlink",
  "extra_isize",
].join(",");

/**
 * The xattrs `mke2fs -d file.tar` copies itself. e2fsprogs' tar reader keeps
 * only these and silently drops every other name (user.*, trusted.*,
 * security.selinux...), so those are written afterwards with debugfs.
 */
const XATTRS_COPIED_FROM_TAR = new Set(["security.capability"]);

export interface Ext4ImageOptions extends ImageWriterOptions {
  /** SOURCE_DATE_EPOCH: every time mke2fs and debugfs would take from the clock. */
  readonly epoch: number;
}

/**
 * Writes `tree` as an ext4 image at `path`: `mke2fs -d` fed with this
 * project's own tar stream.
 *
 * How each part of the tree gets into the image:
 * - e2fsprogs >= 1.47.1 (tar input, libarchive at run time): everything from
 *   the tar stream — kinds, modes incl. setuid/setgid/sticky, uid/gid
 *   (32-bit), mtimes, hardlinks (one inode), device numbers, fifos, symlinks,
 *   security.capability — with no root needed; other xattrs are added with
 *   `debugfs -w ea_set`. atime and ctime are what the tar stream says (0 when
 *   it records none); crtime is the epoch.
 * - older e2fsprogs, as root: a staging directory written exactly by
 *   materialiseTree, copied by `mke2fs -d DIR` (which keeps all of the above
 *   and every xattr).
 * - older e2fsprogs, not root: an error naming e2fsprogs >= 1.47.1.
 *
 * Then metadata_csum is switched on (enableMetadataChecksums): tune2fs, and
 * e2fsck -fpD, which also checks the whole image.
 *
 * Reproducibility: the UUID and the directory hash seed derive from the tree
 * (imageUuid); E2FSPROGS_FAKE_TIME and E2FSCK_TIME pin every time the tools
 * would take from the clock, and E2FSCK_CONFIG=/dev/null keeps the host's
 * e2fsck.conf out; with e2fsprogs 1.47.2 two builds of one tree are
 * byte-identical (checked by the tests).
 *
 * mke2fs also creates /lost+found (root-owned, 0700), which e2fsck expects;
 * it is the one entry in the image that is not in the tree, unless the tree
 * has its own.
 */
export async function writeExt4Image(tree: RootfsTree, path: string, opts: Ext4ImageOptions): Promise<void> {
  const mke2fs = requireTool("mke2fs", "e2fsprogs", undefined, opts.toolDirs);
  // The version probe (a process) runs while the tree is walked below.
  const capsProbe = mke2fsCapabilities(mke2fs);
  const privileged = opts.privileged ?? runningAsRoot();
  const facts = treeFacts(tree);
  const size = ext4ImageSize(tree);
  const uuid = imageUuid(tree, "ext4");
  const caps = await capsProbe;
  if (!caps.tarInput && !privileged) {
    throw new A3sError(
      "ETOOL",
      `mke2fs ${caps.version} cannot read a tarball (e2fsprogs 1.47.1 or newer can), and without root a staging ` +
        `directory cannot hold the tree's owners and device nodes`,
      { subject: mke2fs, hint: `install e2fsprogs >= 1.47.1 (Debian 12: apt-get install -t bookworm-backports e2fsprogs), or build as root   (${DOCTOR_HINT})` },
    );
  }
  const debugfsFixups = caps.tarInput ? xattrFixups(facts) : [];
  // Looked up before mke2fs runs, so a missing tool fails before any work.
  const debugfs = debugfsFixups.length > 0 ? requireTool("debugfs", "e2fsprogs", undefined, opts.toolDirs) : undefined;
  const tune2fs = requireTool("tune2fs", "e2fsprogs", undefined, opts.toolDirs);
  const e2fsck = requireTool("e2fsck", "e2fsprogs", undefined, opts.toolDirs);

  const root = tree.root;
  const env = toolEnv({ E2FSPROGS_FAKE_TIME: String(opts.epoch), E2FSCK_TIME: String(opts.epoch), E2FSCK_CONFIG: "/dev/null" });
  const args = [
    "-q",
    "-F",
    "-t",
    "ext4",
    "-b",
    String(EXT4_BLOCK_SIZE),
    "-I",
    String(EXT4_INODE_SIZE),
    "-N",
    String(size.inodes),
    "-m",
    "0",
    "-O",
    MKE2FS_FEATURES,
    "-U",
    uuid,
    // root_owner covers a tar stream without a "./" entry; lazy_itable_init=0
    // writes the inode tables out now, so the image is complete as a file.
    "-E",
    `hash_seed=${uuid},lazy_itable_init=0,root_owner=${root.uid}:${root.gid}`,
  ];
  const fsSize = `${(size.blocks * EXT4_BLOCK_SIZE) / 1024}k`;
  const signal = opts.signal;

  await withScratchDir(
    "ext4-",
    async (scratch) => {
      try {
        if (caps.tarInput && caps.tarFromStdin) {
          // (A piped Readable instead cost 100 ms more for a Debian minbase,
          // with twice the CPU in node: see tarFeed.)
          await runTool(mke2fs, [...args, "-d", "-", path, fsSize], { env, feed: tarFeed(tree, signal), signal });
        } else if (caps.tarInput) {
          const tarball = join(scratch, "rootfs.tar");
          // A cancelled pipeline rejects with an AbortError; the caller expects the signal's reason.
          await pipeline(tarStream(tree), createWriteStream(tarball), { signal }).catch((e: unknown) => {
            signal?.throwIfAborted();
            throw e;
          });
          await runTool(mke2fs, [...args, "-d", tarball, path, fsSize], { env, signal });
        } else {
          const staging = join(scratch, "root");
          await materialiseTree(tree, staging, { privileged: true, signal });
          await runTool(mke2fs, [...args, "-d", staging, path, fsSize], { env, signal });
        }
      } catch (e) {
        throw await explainMke2fsFailure(e, { mke2fs, path, imageBytes: size.blocks * EXT4_BLOCK_SIZE });
      }
      if (debugfs) await applyXattrs(debugfs, path, debugfsFixups, scratch, env, signal);
      await enableMetadataChecksums({ tune2fs, e2fsck }, path, env, signal);
    },
    opts.scratchDir,
  );
}

/**
 * Switches metadata_csum on in the filled image: `tune2fs -O metadata_csum`
 * writes the checksum of every inode, extent block, xattr block, bitmap and
 * group descriptor, once each; then `e2fsck -fpD` rebuilds every directory
 * with room for its checksum tail (tune2fs cannot add one to a directory
 * block that mke2fs filled to the last byte, and asks for exactly this run),
 * and indexes the directories of more than one block (htree, as dir_index
 * promises; image-size.ts counts the blocks that takes). Both are quick (10
 * and 17 ms for a Debian minbase), far less than the checksums cost mke2fs
 * while it fills the image.
 *
 * e2fsck also checks the whole image. In preen mode (-p) it makes only the
 * safe repairs, so anything else it finds (a bug in the tools or here) fails
 * the build instead of being "fixed" away: exit status 1 means it rebuilt the
 * directories, as it always does here; 0 would be a clean image; anything
 * higher is an error.
 */
async function enableMetadataChecksums(
  tools: { tune2fs: string; e2fsck: string },
  image: string,
  env: NodeJS.ProcessEnv,
  signal: AbortSignal | undefined,
): Promise<void> {
  await runTool(tools.tune2fs, ["-O", "metadata_csum", image], { env, signal });
  try {
    await runTool(tools.e2fsck, ["-f", "-p", "-D", image], { env, signal });
  } catch (e) {
    if (e instanceof ToolFailure && e.status === 1) return;
    if (e instanceof ToolFailure) {
      throw new A3sError("ETOOL", `e2fsck found problems in the new ext4 image that it will not repair on its own: ${toolComplaint(`${e.stdout}\n${e.stderr}`)}`, {
        subject: tools.e2fsck,
        hint: "this is a bug in a3s-rootfs or e2fsprogs; please report it with the e2fsprogs version (mke2fs -V)",
        cause: e,
      });
    }
    throw e;
  }
}

interface XattrFixup {
  readonly path: string;
  readonly name: string;
  readonly value: Uint8Array;
}

/** xattrs the tar path does not carry, one per inode (the first name of a hardlinked file). */
function xattrFixups(facts: TreeFacts): XattrFixup[] {
  const out: XattrFixup[] = [];
  for (const e of facts.entries) {
    if (e.kind === "hardlink") continue;
    for (const [name, value] of e.inode.xattrs) {
      if (!XATTRS_COPIED_FROM_TAR.has(name)) out.push({ path: e.path, name, value });
    }
  }
  return out;
}

/**
 * Sets xattrs in the finished image with one `debugfs -w -f SCRIPT` run.
 * Values go through files (`ea_set -f`), so any bytes are safe; paths are
 * double-quoted with `"` doubled, as debugfs's parser reads them. A newline
 * cannot be written in a script line, so such a name is refused rather than
 * split into a second command.
 */
async function applyXattrs(
  debugfs: string,
  image: string,
  fixups: readonly XattrFixup[],
  scratch: string,
  env: NodeJS.ProcessEnv,
  signal: AbortSignal | undefined,
): Promise<void> {
  const lines: string[] = [];
  for (const [n, f] of fixups.entries()) {
    if (/[\n\r]/.test(f.path) || /[\s"]/.test(f.name)) {
      throw new A3sError("EPATH", `cannot set xattr ${JSON.stringify(f.name)} on ${JSON.stringify(f.path)} with debugfs`, {
        subject: f.path,
      });
    }
    const valueFile = join(scratch, `xattr-${n}`);
    await writeFile(valueFile, f.value);
    lines.push(`ea_set -f ${quote(valueFile)} ${quote(f.path)} ${f.name}`);
  }
  const script = join(scratch, "xattrs.debugfs");
  await writeFile(script, lines.join("\n") + "\n");
  const { stderr } = await runTool(debugfs, ["-w", "-f", script, image], { env, signal });
  // debugfs exits 0 even when a command fails; its complaints are the only signal.
  const problems = stderr.split("\n").filter((l) => l.trim() !== "" && !/^debugfs \d/.test(l));
  if (problems.length > 0) {
    throw new A3sError("ETOOL", `debugfs could not set xattrs in the ext4 image: ${problems.slice(0, 5).join("; ")}`, {
      subject: debugfs,
    });
  }
}

function quote(s: string): string {
  return `"${s.replaceAll('"', '""')}"`;
}

/**
 * mke2fs's failure in the user's terms. Two kinds of "full" look alike in
 * its words and must not be confused: the disk holding the image ran out of
 * space ("No space left on device", the host's ENOSPC: free space, or write
 * elsewhere), or the image itself was too small for the tree ("Could not
 * allocate block/inode in ext2 filesystem": the size estimate was wrong, a
 * bug to report). The disk is measured first (statfs), so a full disk is
 * never reported as an estimate bug.
 */
async function explainMke2fsFailure(e: unknown, o: { mke2fs: string; path: string; imageBytes: number }): Promise<unknown> {
  if (!(e instanceof ToolFailure)) return e;
  if (/libarchive/.test(e.stderr)) {
    return new A3sError("ETOOL", `mke2fs cannot read tarballs here: libarchive is not installed`, {
      subject: o.mke2fs,
      hint: `apt-get install libarchive13   (${DOCTOR_HINT})`,
      cause: e,
    });
  }
  if (/Could not allocate (block|inode)/i.test(e.stderr) && !(await diskProblem(o.path, e.stderr, o.imageBytes))) {
    return new A3sError(
      "ETOOL",
      `the computed ext4 size (${o.imageBytes / EXT4_BLOCK_SIZE} blocks of 4 KiB) was too small for this tree; ` +
        `this is a bug in the size estimate: ${toolComplaint(e.stderr)}`,
      { subject: o.mke2fs, hint: "please report it with the tree's entry count and size", cause: e },
    );
  }
  return explainImageToolFailure(e, { format: "ext4", path: o.path, imageBytes: o.imageBytes });
}
