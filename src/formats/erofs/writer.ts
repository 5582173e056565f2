import { join } from "node:path";
import { A3sError } from "../../errors.js";
import type { RootfsTree } from "../../tree/index.js";
import { DOCTOR_HINT, hostCommand, requireTool, runToolCommand } from "../../util/host-tool.js";
import { runningAsRoot } from "../../util/running-as-root.js";
import { materialiseTree } from "../dir/index.js";
import {
  explainImageToolFailure,
  imageUuid,
  listSome,
  mkfsErofsCapabilities,
  toolEnv,
  treeFacts,
  withScratchDir,
  type ImageWriterOptions,
  type TreeFacts,
} from "../image/index.js";
import { tarFeed } from "../tar/index.js";

/**
 * erofs compression. "lz4hc" (at EROFS_LZ4HC_LEVEL) is the default: an agent
 * rootfs is mostly one binary, and lz4hc roughly halves it (a 30 MB agent:
 * 9.6 MB against 30.8 MB uncompressed). Decompressing costs the guest little
 * under KVM; under TCG it shows: with the microVM kernel, 8 interleaved
 * boots each, init start → agent exec took 51.6 ms against 44.1 ms
 * uncompressed for the scratch image with the 60 KB probe agent (VMM start →
 * agent start 500 against 487 ms), and 59.4 against 45.4 ms with a 30 MB
 * agent (521 against 494 ms). Compressed erofs needs CONFIG_EROFS_FS_ZIP in
 * the guest kernel (Debian's kernels have it, with lz4); "none" is for
 * kernels without it, is the fastest to build and boots fastest under TCG.
 */
export type ErofsCompression = "lz4hc" | "lz4" | "none";

/**
 * The lz4hc level written (`-zlz4hc,LEVEL`, a form erofs-utils 1.5 and 1.8
 * both read), chosen by measurement rather than left at lz4hc's default of
 * 9. On the Debian bookworm minbase (120 MB of tar; erofs-utils 1.8.6,
 * 2 cores; CPU of two runs each):
 *
 *     level 9 (the default)   66.08 MB   1.5 s CPU
 *     level 6                 66.20 MB   1.05 s
 *     level 4                 66.42 MB   0.9 s
 *     level 1                 68.86 MB   0.5 s
 *     lz4 (for comparison)    71.63 MB   0.2 s
 *
 * Level 4 costs 40 % less CPU than 9 for an image 0.5 % larger, and lz4
 * decompression runs at the same speed whatever the level, so the guest
 * reads it as fast; below 4 the image grows faster than the time falls.
 * The level is fixed, so the image stays byte-identical per tree.
 */
export const EROFS_LZ4HC_LEVEL = 4;

export interface ErofsWriterOptions extends ImageWriterOptions {
  readonly compression?: ErofsCompression;
}

export interface ErofsImageOptions extends ErofsWriterOptions {
  /** SOURCE_DATE_EPOCH: the image's build time, and the least mtime kept (see below). */
  readonly epoch: number;
}

/**
 * Writes `tree` as an erofs image at `path` with mkfs.erofs.
 *
 * How the tree gets in:
 * - erofs-utils >= 1.7 (`--tar=f` with no source: the tarball on stdin):
 *   from this project's tar stream, piped, exact for every kind, mode, owner,
 *   mtime, hardlink, device and xattr, root or not, with nothing written to
 *   disk but the image. The host's mkfs.erofs when it is new enough (Debian
 *   13), else the copy of Debian 13's that the output provisions into the
 *   cache (`opts.tools`, provision/image-tools.ts).
 * - older erofs-utils (Debian 12 has 1.5), as root: a staging directory
 *   written exactly by materialiseTree (owners, devices, security xattrs).
 * - older erofs-utils, not root: a staging directory plus `--all-root` or
 *   `--force-uid/--force-gid` when every inode has one and the same owner;
 *   device nodes, xattrs other than user.* or mixed owners cannot be
 *   expressed, and that is an error naming erofs-utils 1.7.
 *
 * Times: mkfs.erofs either stamps one time on every inode (-T) or, with
 * SOURCE_DATE_EPOCH, clamps mtimes newer than it and keeps the rest (and
 * stores full inodes with their own mtime). SOURCE_DATE_EPOCH is therefore
 * set to max(epoch, newest mtime in the tree): nothing is clamped, every
 * mtime is kept, and the superblock's build time is that value.
 * With a fixed UUID (imageUuid) the image is byte-identical for one tree.
 * If the tree has no xattrs at all, xattrs are disabled (-x -1), so labels
 * the host puts on staging files (security.selinux) cannot leak in.
 */
export async function writeErofsImage(tree: RootfsTree, path: string, opts: ErofsImageOptions): Promise<void> {
  const mkfsCommand = opts.tools?.["mkfs.erofs"] ?? hostCommand(requireTool("mkfs.erofs", "erofs-utils", undefined, opts.toolDirs));
  const mkfs = mkfsCommand.label;
  const caps = await mkfsErofsCapabilities(mkfsCommand);
  const compression = opts.compression ?? "lz4hc";
  if (compression !== "none" && !caps.compressors.includes(compression)) {
    throw new A3sError("ETOOL", `${mkfs} has no ${compression} compressor (it has: ${caps.compressors.join(", ") || "none"})`, {
      subject: mkfs,
      hint: `choose another erofs compression, or "none"`,
    });
  }
  const privileged = opts.privileged ?? runningAsRoot();
  const facts = treeFacts(tree);
  const ownership = caps.tarInput || privileged ? [] : unprivilegedOwnership(facts, mkfs);

  const args = [
    "--quiet",
    "-U",
    imageUuid(tree, "erofs"),
    ...(compression === "none" ? [] : [compression === "lz4hc" ? `-zlz4hc,${EROFS_LZ4HC_LEVEL}` : `-z${compression}`]),
    ...(facts.hasXattrs ? [] : ["-x", "-1"]),
    ...ownership,
  ];
  const env = toolEnv({ SOURCE_DATE_EPOCH: String(Math.max(opts.epoch, facts.newestMtime)) });

  const signal = opts.signal;

  if (caps.tarInput) {
    // The tar stream goes straight into mkfs.erofs's stdin: no tarball and no staging copy on disk.
    try {
      await runToolCommand(mkfsCommand, ["--tar=f", ...args, path], { env, signal, feed: tarFeed(tree, signal) });
    } catch (e) {
      throw await explainImageToolFailure(e, { format: "erofs", path });
    }
    return;
  }
  await withScratchDir(
    "erofs-",
    async (scratch) => {
      const input = join(scratch, "root");
      await materialiseTree(tree, input, { privileged, signal });
      try {
        await runToolCommand(mkfsCommand, [...args, path, input], { env, signal });
      } catch (e) {
        throw await explainImageToolFailure(e, { format: "erofs", path });
      }
    },
    opts.scratchDir,
  );
}

/**
 * The mkfs.erofs options that give every inode its owner when the staging
 * directory cannot (not root, no tar input), or an error saying why that is
 * impossible for this tree.
 */
function unprivilegedOwnership(facts: TreeFacts, mkfs: string): string[] {
  const problems: string[] = [];
  if (facts.devices.length > 0) problems.push(`device nodes: ${listSome(facts.devices)}`);
  if (facts.privilegedXattrs.length > 0) problems.push(`xattrs other than user.*: ${listSome(facts.privilegedXattrs)}`);
  if (facts.owners.size > 1) problems.push(`${facts.owners.size} different owners (${[...facts.owners].slice(0, 4).join(", ")})`);
  if (problems.length > 0) {
    throw new A3sError(
      "ETOOL",
      `${mkfs} cannot read a tarball (erofs-utils 1.7 or newer can) and this process is not root, so the erofs image ` +
        `cannot hold the tree exactly: ${problems.join("; ")}`,
      { subject: mkfs, hint: `install erofs-utils >= 1.7 (Debian 13), or build as root   (${DOCTOR_HINT})` },
    );
  }
  const [uid, gid] = ([...facts.owners][0] ?? "0:0").split(":");
  return uid === "0" && gid === "0" ? ["--all-root"] : [`--force-uid=${uid}`, `--force-gid=${gid}`];
}
