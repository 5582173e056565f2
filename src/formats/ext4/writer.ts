import { A3sError } from "../../errors.js";
import type { RootfsTree } from "../../tree/index.js";
import type { FileDigest } from "../../util/file-sha256.js";
import { requireTool, runTool, ToolFailure } from "../../util/host-tool.js";
import { ARCHIVE_CHUNK_BYTES, writeArchiveToFile, type ChunkWriter } from "../archive/index.js";
import { imageUuid, toolComplaint, toolEnv, type ImageWriterOptions } from "../image/index.js";
import { EXT4_BLOCK_SIZE, EXT4_INODE_SIZE } from "./geometry.js";
import { ext4ImageSize } from "./image-size.js";
import { planExt4Image, type ImagePlan } from "./image-plan.js";
import { blockBitmaps, descriptorBlocks, encodeInode, inodeBitmaps, superblockBlock } from "./metadata-blocks.js";

export interface Ext4ImageOptions extends ImageWriterOptions {
  /** SOURCE_DATE_EPOCH: the superblock's times, and lost+found's. */
  readonly epoch: number;
}

/**
 * Writes `tree` as an ext4 image at `path`, itself: every block is laid out
 * first (image-plan.ts), then the image is written front to back in one
 * pass, hashed on the way (file content read straight from the tree's
 * sources into the output's chunks, as the tar and cpio writers do).
 *
 * Why not `mke2fs -d`: fed a tar stream, mke2fs spent about 1 s of a Debian
 * minbase's build reading it through libarchive, then tune2fs and e2fsck
 * added the checksums and indexes (metadata_csum, htree) it could not write
 * fast itself, and the image was read once more to hash it; five processes
 * in all. It also needed e2fsprogs 1.47.1 for tar input without root, and
 * dropped every xattr but security.capability from the tar (set afterwards
 * with debugfs). Writing the format here removes all of that: what remains
 * is the content's copy.
 *
 * The image: no journal (the root is mounted read-only; a journal would cost
 * 4 MiB of a 10 MB rootfs), extents, 256-byte inodes with nanosecond-ready
 * times and in-inode xattrs, metadata_csum, htree-indexed directories of
 * more than one block, no backup superblocks (see image-plan.ts). Kinds,
 * modes with setuid/setgid/sticky, 32-bit owners, mtimes (34-bit, as ext4's
 * extra epoch bits carry them), hardlinks, device numbers and every xattr
 * are exact; the UUID and directory hash seed derive from the tree
 * (imageUuid), so the same tree gives the same bytes, with no root needed.
 * The image also has /lost+found (root-owned, 0700), which e2fsck expects,
 * unless the tree has its own.
 *
 * Before the image is handed back, `e2fsck -fn` (e2fsprogs, in every Debian
 * install) checks all of it read-only: a mistake here fails the build
 * rather than reaching a guest.
 */
export async function writeExt4Image(tree: RootfsTree, path: string, opts: Ext4ImageOptions): Promise<{ digest: FileDigest }> {
  // Looked up first, so a missing tool fails before any work.
  const e2fsck = requireTool("e2fsck", "e2fsprogs", undefined, opts.toolDirs);
  // One walk of the tree for the size, the UUID and the plan (each ~10-25 ms for a Debian minbase).
  const entries = tree.entries();
  const size = ext4ImageSize(tree, entries);
  const uuid = Buffer.from(imageUuid(tree, "ext4", entries).replaceAll("-", ""), "hex");
  const plan = planExt4Image(tree, entries, size, uuid);
  const digest = await writeArchiveToFile((out) => produceImage(plan, opts.epoch, out), path, opts.signal);
  await checkImage(e2fsck, path, opts.epoch, opts.signal);
  return { digest };
}

function* produceImage(plan: ImagePlan, epoch: number, out: ChunkWriter): Generator<void, void, void> {
  const g = plan.geometry;
  const blockMaps = blockBitmaps(plan);
  const inodeMaps = inodeBitmaps(plan);
  out.bytes(superblockBlock(plan, epoch));
  out.bytes(descriptorBlocks(plan, blockMaps, inodeMaps));
  for (const b of blockMaps) out.bytes(b);
  for (const b of inodeMaps) out.bytes(b);
  if (out.ready.length > 0) yield;

  const perBlock = EXT4_BLOCK_SIZE / EXT4_INODE_SIZE;
  for (let group = 0; group < g.groups; group++) {
    const firstIno = group * g.inodesPerGroup + 1;
    for (let b = 0; b < g.inodeTableBlocks; b++) {
      const { buf, at } = out.region(EXT4_BLOCK_SIZE);
      for (let k = 0; k < perBlock; k++) {
        const r = plan.inodes[firstIno + b * perBlock + k];
        if (r) encodeInode(buf, at + k * EXT4_INODE_SIZE, r, epoch);
      }
      if (out.ready.length > 0) yield;
    }
  }

  for (const p of plan.placements) {
    if (out.total !== p.at * EXT4_BLOCK_SIZE) throw new Error(`ext4 writer: block ${p.at} written at byte ${out.total}`);
    if (p.kind === "blocks") {
      for (const block of p.data) {
        out.bytes(block);
        if (out.ready.length > 0) yield;
      }
    } else {
      yield* out.content(p.content, p.size, p.subject);
      out.zeros((EXT4_BLOCK_SIZE - (p.size % EXT4_BLOCK_SIZE)) % EXT4_BLOCK_SIZE);
      if (out.ready.length > 0) yield;
    }
  }
  if (out.total !== plan.usedBlocks * EXT4_BLOCK_SIZE) throw new Error(`ext4 writer: used blocks end at byte ${out.total}`);
  for (let left = (g.blocks - plan.usedBlocks) * EXT4_BLOCK_SIZE; left > 0; left -= ARCHIVE_CHUNK_BYTES) {
    out.zeros(Math.min(left, ARCHIVE_CHUNK_BYTES));
    if (out.ready.length > 0) yield;
  }
}

/**
 * `e2fsck -fn`: a full, read-only check. Exit status 0 is a clean image;
 * anything else is a fault of this writer, reported with e2fsck's words.
 * E2FSCK_TIME pins "now" to the epoch (an image stamped after the host's
 * clock is not "in the future"), E2FSCK_CONFIG keeps the host's
 * e2fsck.conf out.
 */
async function checkImage(e2fsck: string, path: string, epoch: number, signal: AbortSignal | undefined): Promise<void> {
  const env = toolEnv({ E2FSCK_TIME: String(epoch), E2FSCK_CONFIG: "/dev/null" });
  try {
    await runTool(e2fsck, ["-f", "-n", path], { env, signal });
  } catch (e) {
    if (!(e instanceof ToolFailure)) throw e;
    throw new A3sError("ETOOL", `e2fsck found problems in the new ext4 image: ${toolComplaint(`${e.stdout}\n${e.stderr}`)}`, {
      subject: e2fsck,
      hint: "this is a bug in a3s-rootfs; please report it with the tree's entry count and the e2fsprogs version (e2fsck -V)",
      cause: e,
    });
  }
}
