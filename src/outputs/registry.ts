import { rm, writeFile } from "node:fs/promises";
import type { RootfsTree } from "../tree/index.js";
import type { ErofsWriterOptions } from "../formats/erofs/index.js";
import type { ImageWriterOptions } from "../formats/image/index.js";
import type { SquashfsWriterOptions } from "../formats/squashfs/index.js";
import { runningAsRoot } from "../util/running-as-root.js";
import { temporaryPathFor } from "./atomic.js";
import type { OutputContext, OutputFormat, OutputPaths, OutputSpec, OutputWriter, WrittenOutput } from "./output.js";

/**
 * The output of each format: what `-o FORMAT:PATH` writes. Each one hands
 * the tree to its format's writer (src/formats) at the temporary path
 * `writeOutputs` gives it; publishing is writeOutputs' job. Adding a format
 * is one writer here and one line in OUTPUT_WRITERS.
 *
 * Each writer loads its format's code when it runs, not when this module
 * loads: a build writes one or two formats, and loading every writer (and
 * the image tools' wrappers) is a large part of the CLI's start time.
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
  async write(tree: RootfsTree, paths: OutputPaths, ctx: OutputContext): Promise<WrittenOutput> {
    const { buildSidecar, directoryIdentity, materialiseTree, sidecarPathFor } = await import("../formats/dir/index.js");
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
    return { companions: [{ tmp: sidecarTmp, final: sidecar }] };
  },
};

/** `tar`: PATH ending in .gz/.tgz or .zst/.tzst is compressed. */
export const tarOutput: OutputWriter = {
  format: "tar",
  async write(tree: RootfsTree, paths: OutputPaths, ctx: OutputContext): Promise<WrittenOutput> {
    const [{ writeArchiveFile }, { compressionForPath }, { tarProducer }] = await Promise.all([
      import("../formats/archive/index.js"),
      import("../formats/compression/compress.js"),
      import("../formats/tar/index.js"),
    ]);
    // The extension is read from the final name: the temporary one ends in random characters.
    const digest = await writeArchiveFile(tarProducer(tree), paths.tmp, compressionForPath(paths.final), ctx.signal);
    return digest ? { digest } : {};
  },
};

/** `cpio`: a newc initramfs; .gz and .zst by extension (gzip at INITRAMFS_GZIP_LEVEL, see compression/compress.ts). */
export const cpioOutput: OutputWriter = {
  format: "cpio",
  async write(tree: RootfsTree, paths: OutputPaths, ctx: OutputContext): Promise<WrittenOutput> {
    let withXattrs = 0;
    let first: string | undefined;
    for (const e of tree.walk()) {
      if (e.kind === "hardlink" || e.inode.xattrs.size === 0) continue;
      withXattrs++;
      first ??= e.path;
    }
    if (withXattrs > 0) {
      ctx.warn(
        `cpio (newc) cannot store extended attributes: ${withXattrs} entries lose theirs ` +
          `(first: ${first}); use an erofs, squashfs or ext4 output to keep them`,
      );
    }
    const [{ writeArchiveFile }, { compressionForPath, INITRAMFS_GZIP_LEVEL }, { cpioProducer }] = await Promise.all([
      import("../formats/archive/index.js"),
      import("../formats/compression/compress.js"),
      import("../formats/newc/index.js"),
    ]);
    const digest = await writeArchiveFile(cpioProducer(tree), paths.tmp, compressionForPath(paths.final), ctx.signal, { gzipLevel: INITRAMFS_GZIP_LEVEL });
    return digest ? { digest } : {};
  },
};

/** `ext4` with writer options (privileged, toolDirs); see formats/ext4/writer.ts. */
export function createExt4Writer(opts: ImageWriterOptions = {}): OutputWriter {
  return { format: "ext4", write: async (tree, paths, ctx) => (await import("../formats/ext4/index.js")).writeExt4Image(tree, paths.tmp, { ...opts, ...imageContext(ctx) }) };
}

/** `erofs` with writer options (compression, privileged, toolDirs); see formats/erofs/writer.ts. */
export function createErofsWriter(opts: ErofsWriterOptions = {}): OutputWriter {
  return {
    format: "erofs",
    write: async (tree, paths, ctx) => {
      // Loaded when used (CLI start time): the writer, and the choice of the host's or the provisioned tool.
      const tools = opts.tools ?? (await (await import("./image-tool-choice.js")).chooseImageTools("erofs", ctx));
      await (await import("../formats/erofs/index.js")).writeErofsImage(tree, paths.tmp, { ...opts, ...imageContext(ctx), tools });
    },
  };
}

/** `squashfs` with writer options (compression, privileged, toolDirs); see formats/squashfs/writer.ts. */
export function createSquashfsWriter(opts: SquashfsWriterOptions = {}): OutputWriter {
  return {
    format: "squashfs",
    write: async (tree, paths, ctx) => {
      // Loaded when used (CLI start time): the writer, and the choice of the host's or the provisioned tool.
      const tools = opts.tools ?? (await (await import("./image-tool-choice.js")).chooseImageTools("squashfs", ctx));
      await (await import("../formats/squashfs/index.js")).writeSquashfsImage(tree, paths.tmp, { ...opts, ...imageContext(ctx), tools });
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

/** `oci`: an OCI image layout tagged latest; `oci:DIR:TAG` outputs get their own writer (oci-layout-output.ts). */
export const ociLayoutOutput: OutputWriter = {
  format: "oci",
  write: async (tree, paths, ctx) => (await import("./oci-layout-output.js")).createOciLayoutWriter().write(tree, paths, ctx),
};

/** The writer of one output: its format's, or an erofs writer with the compression the spec asks for. */
export function outputWriterFor(spec: Pick<OutputSpec, "format" | "erofsCompression">): OutputWriter | undefined {
  if (spec.format === "erofs" && spec.erofsCompression) return createErofsWriter({ compression: spec.erofsCompression });
  return OUTPUT_WRITERS[spec.format];
}

/** One writer per format. */
export const OUTPUT_WRITERS: Partial<Record<OutputFormat, OutputWriter>> = {
  dir: dirOutput,
  tar: tarOutput,
  cpio: cpioOutput,
  ext4: ext4Output,
  erofs: erofsOutput,
  squashfs: squashfsOutput,
  oci: ociLayoutOutput,
};
