import { rm, writeFile } from "node:fs/promises";
import type { RootfsTree } from "../tree/index.js";
import { writeArchiveFile } from "../formats/archive/index.js";
import { compressionForPath } from "../formats/compression/index.js";
import { buildSidecar, directoryIdentity, materialiseTree, sidecarPathFor } from "../formats/dir/index.js";
import { writeErofsImage, type ErofsWriterOptions } from "../formats/erofs/index.js";
import { writeExt4Image } from "../formats/ext4/index.js";
import type { ImageWriterOptions } from "../formats/image/index.js";
import { cpioProducer } from "../formats/newc/index.js";
import { writeSquashfsImage, type SquashfsWriterOptions } from "../formats/squashfs/index.js";
import { tarProducer } from "../formats/tar/index.js";
import { runningAsRoot } from "../util/running-as-root.js";
import { temporaryPathFor } from "./atomic.js";
import { chooseImageTools } from "./image-tool-choice.js";
import type { OutputCompanion, OutputContext, OutputFormat, OutputPaths, OutputWriter } from "./output.js";

/**
 * The output of each format: what `-o FORMAT:PATH` writes. Each one hands
 * the tree to its format's writer (src/formats) at the temporary path
 * `writeOutputs` gives it; publishing is writeOutputs' job. Adding a format
 * is one writer here and one line in OUTPUT_WRITERS.
 */

/**
 * `dir`: the tree as a real directory. As root every entry is exact; as
 * non-root what cannot be applied is recorded in the metadata sidecar
 * PATH.a3s-metadata.json. The sidecar is written as root too: it records the
 * directory's identity, a3s-rootfs's mark that a later build may replace it
 * (outputs/output-target.ts). It is published right after the directory.
 */
export const dirOutput: OutputWriter = {
  format: "dir",
  async write(tree: RootfsTree, paths: OutputPaths, ctx: OutputContext): Promise<OutputCompanion[]> {
    const privileged = runningAsRoot();
    const { approximated } = await materialiseTree(tree, paths.tmp, { privileged, signal: ctx.signal });
    const sidecar = sidecarPathFor(paths.final);
    // A rename keeps the directory's identity, so the temporary's is the published one's.
    const identity = await directoryIdentity(paths.tmp);
    const sidecarTmp = temporaryPathFor(sidecar);
    try {
      await writeFile(sidecarTmp, JSON.stringify(buildSidecar(tree, approximated, identity)) + "\n", { flag: "wx", signal: ctx.signal });
    } catch (e) {
      await rm(sidecarTmp, { force: true });
      // A cancelled write rejects with an AbortError; the caller expects the signal's reason.
      ctx.signal?.throwIfAborted();
      throw e;
    }
    if (approximated.length > 0) {
      ctx.warn(
        `not running as root: ${approximated.length} entries (ownership, device nodes or security xattrs) ` +
          `could not be applied on disk; their exact metadata is in ${sidecar}`,
      );
    }
    return [{ tmp: sidecarTmp, final: sidecar }];
  },
};

/** `tar`: PATH ending in .gz/.tgz or .zst/.tzst is compressed. */
export const tarOutput: OutputWriter = {
  format: "tar",
  async write(tree: RootfsTree, paths: OutputPaths, ctx: OutputContext): Promise<void> {
    // The extension is read from the final name: the temporary one ends in random characters.
    await writeArchiveFile(tarProducer(tree), paths.tmp, compressionForPath(paths.final), ctx.signal);
  },
};

/** `cpio`: a newc initramfs; .gz and .zst by extension. */
export const cpioOutput: OutputWriter = {
  format: "cpio",
  async write(tree: RootfsTree, paths: OutputPaths, ctx: OutputContext): Promise<void> {
    const withXattrs = tree.entries().filter((e) => e.kind !== "hardlink" && e.inode.xattrs.size > 0);
    if (withXattrs.length > 0) {
      ctx.warn(
        `cpio (newc) cannot store extended attributes: ${withXattrs.length} entries lose theirs ` +
          `(first: ${withXattrs[0]?.path}); use an erofs, squashfs or ext4 output to keep them`,
      );
    }
    await writeArchiveFile(cpioProducer(tree), paths.tmp, compressionForPath(paths.final), ctx.signal);
  },
};

/** `ext4` with writer options (privileged, toolDirs); see formats/ext4/writer.ts. */
export function createExt4Writer(opts: ImageWriterOptions = {}): OutputWriter {
  return { format: "ext4", write: (tree, paths, ctx) => writeExt4Image(tree, paths.tmp, { ...opts, ...imageContext(ctx) }) };
}

/** `erofs` with writer options (compression, privileged, toolDirs); see formats/erofs/writer.ts. */
export function createErofsWriter(opts: ErofsWriterOptions = {}): OutputWriter {
  return {
    format: "erofs",
    write: async (tree, paths, ctx) => {
      const tools = opts.tools ?? (await chooseImageTools("erofs", ctx));
      await writeErofsImage(tree, paths.tmp, { ...opts, ...imageContext(ctx), tools });
    },
  };
}

/** `squashfs` with writer options (compression, privileged, toolDirs); see formats/squashfs/writer.ts. */
export function createSquashfsWriter(opts: SquashfsWriterOptions = {}): OutputWriter {
  return {
    format: "squashfs",
    write: async (tree, paths, ctx) => {
      const tools = opts.tools ?? (await chooseImageTools("squashfs", ctx));
      await writeSquashfsImage(tree, paths.tmp, { ...opts, ...imageContext(ctx), tools });
    },
  };
}

/** What an image writer takes from the build: the epoch, cancellation, and where to stage. */
function imageContext(ctx: OutputContext): { epoch: number; signal: AbortSignal | undefined; scratchDir?: string } {
  return { epoch: ctx.epoch, signal: ctx.signal, ...(ctx.scratchDir ? { scratchDir: ctx.scratchDir } : {}) };
}

export const ext4Output: OutputWriter = createExt4Writer();
export const erofsOutput: OutputWriter = createErofsWriter();
export const squashfsOutput: OutputWriter = createSquashfsWriter();

/** One writer per format. */
export const OUTPUT_WRITERS: Partial<Record<OutputFormat, OutputWriter>> = {
  dir: dirOutput,
  tar: tarOutput,
  cpio: cpioOutput,
  ext4: ext4Output,
  erofs: erofsOutput,
  squashfs: squashfsOutput,
};
