import { existsSync } from "node:fs";
import { stat } from "node:fs/promises";
import { resolve } from "node:path";
import { A3sError } from "../errors.js";
import { detectFileFormat } from "../formats/detect.js";
import { readDirectoryTree, readHostXattrs, sidecarPathFor } from "../formats/dir/index.js";
import { openArchiveTree } from "../formats/open-archive.js";
import { isImageFormat, readImageTree, type ImageFormat } from "../formats/read-image.js";
import { parseSourceSpec, type SourceOptions } from "../sources/parse-source.js";
import { openPulledBootImage } from "./open-boot-image.js";
import type { SourceContext } from "../sources/source.js";
import { DEFAULT_EPOCH, type RootfsTree } from "../tree/index.js";

/** What `inspect` was pointed at, read into a tree. */
export interface InspectTarget {
  readonly tree: RootfsTree;
  /** How it was read. "source": through a source spec such as oci:DIR or docker://REF. */
  readonly format: "dir" | "tar" | "cpio" | ImageFormat | "source";
  /** False when xattrs (file capabilities) could not be read from it. */
  readonly xattrsRead: boolean;
  /** What could not be read exactly, for the report. */
  readonly notes: readonly string[];
  /** Removes scratch files the tree's contents point into (extracted images, decompressed archives). */
  dispose(): Promise<void>;
}

export interface OpenTargetOptions {
  /** Whether this process may recreate an image exactly on disk (root); defaults to "running as root". */
  readonly privileged?: boolean;
  /** For source specs (oci:, docker://...): where warnings and progress go. */
  readonly sourceContext?: Partial<SourceContext>;
  /** For source specs and boot image artifacts: registry credentials, plain HTTP, the platform (as `build` takes them). */
  readonly sourceOptions?: Pick<SourceOptions, "creds" | "insecure" | "platform">;
}

/**
 * Reads what `inspect` was pointed at:
 * - a directory (with its on-disk xattrs, or its metadata sidecar when a
 *   non-root `dir` output wrote one);
 * - a tar or cpio archive, plain or gzip/zstd-compressed;
 * - an ext4, erofs or squashfs image (recognised by magic, see formats/detect.ts);
 * - `docker://REF` naming an a3s boot image artifact: pulled and read as that image;
 * - anything else that contains ":" and is not an existing path, as a
 *   source spec (`oci:DIR[:REF]`, `docker://REF`...) through parseSourceSpec.
 */
export async function openInspectTarget(target: string, opts: OpenTargetOptions = {}): Promise<InspectTarget> {
  const st = await stat(target).catch(() => undefined);
  if (!st) {
    if (target.startsWith("docker://")) {
      const pulled = await openPulledBootImage(target, {
        ...(opts.privileged !== undefined ? { privileged: opts.privileged } : {}),
        ...(opts.sourceContext?.warn ? { warn: opts.sourceContext.warn } : {}),
        ...(opts.sourceContext?.progress ? { progress: opts.sourceContext.progress } : {}),
        ...(opts.sourceContext?.signal ? { signal: opts.sourceContext.signal } : {}),
        ...(opts.sourceOptions ? { registry: opts.sourceOptions } : {}),
      });
      if (pulled) return pulled;
    }
    if (target.includes(":")) return openSource(target, opts);
    throw new A3sError("ENOENT", `${target} does not exist`, { subject: target });
  }
  const none = async (): Promise<void> => undefined;
  if (st.isDirectory()) {
    const dir = resolve(target);
    // A sidecar already carries the tree's xattrs; the disk then holds an approximation.
    const sidecar = existsSync(sidecarPathFor(dir));
    // getfattr runs while the directory is walked.
    const reading = sidecar ? undefined : readHostXattrs(dir);
    reading?.catch(() => undefined);
    const tree = await readDirectoryTree(dir);
    if (!reading) return { tree, format: "dir", xattrsRead: true, notes: [], dispose: none };
    const xattrs = await reading;
    for (const [path, attrs] of xattrs ?? []) {
      const inode = tree.lookup(path, false);
      if (inode) inode.xattrs = new Map(attrs);
    }
    const notes = xattrs ? [] : ["xattrs were not read: getfattr is not installed (Debian package attr)"];
    return { tree, format: "dir", xattrsRead: xattrs !== undefined, notes, dispose: none };
  }
  if (!st.isFile()) throw new A3sError("EUSAGE", `${target} is neither a directory nor a file`, { subject: target });
  const image = await detectFileFormat(target);
  if (isImageFormat(image)) {
    const read = await readImageTree(target, image, opts.privileged === undefined ? {} : { privileged: opts.privileged });
    return { tree: read.tree, format: image, xattrsRead: read.xattrsRead, notes: read.notes, dispose: () => read.dispose() };
  }
  const archive = await openArchiveTree(target);
  // newc cpio has no xattrs at all (so nothing is lost); tar carries them as PAX records.
  return { tree: archive.tree, format: archive.format, xattrsRead: true, notes: [], dispose: () => archive.dispose() };
}

async function openSource(spec: string, opts: OpenTargetOptions): Promise<InspectTarget> {
  const source = parseSourceSpec(spec, opts.sourceOptions ?? {});
  const ctx = opts.sourceContext ?? {};
  const warn = ctx.warn ?? ((m: string) => process.stderr.write(`a3s-rootfs: warning: ${m}\n`));
  const { tree, agentWarnings } = await source.load({ ...ctx, epoch: ctx.epoch ?? DEFAULT_EPOCH, warn, progress: ctx.progress ?? (() => undefined) });
  for (const w of agentWarnings ?? []) warn(w);
  return { tree, format: "source", xattrsRead: true, notes: [], dispose: async () => undefined };
}
