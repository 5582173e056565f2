import type { VerityInfo } from "../formats/verity/index.js";
import type { RootfsTree } from "../tree/index.js";

/** Every format `-o FORMAT:PATH` accepts. */
export const OUTPUT_FORMATS = ["dir", "tar", "cpio", "ext4", "erofs", "squashfs"] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export interface OutputSpec {
  readonly format: OutputFormat;
  /** Where the finished output is published (absolute or relative to the cwd). */
  readonly path: string;
}

export interface OutputContext {
  /** SOURCE_DATE_EPOCH: the time stamped into formats that record one (image creation times). */
  readonly epoch: number;
  /** Reports something the user should know but that does not stop the build. */
  readonly warn: (message: string) => void;
  /**
   * Cancels the writing: the output being written is abandoned (its tools
   * killed and awaited, its temporary and staging copies removed) and
   * nothing more is published. An output already published stays.
   */
  readonly signal?: AbortSignal | undefined;
  /** Where staging copies go: the build's scratch directory (default: os.tmpdir()). */
  readonly scratchDir?: string | undefined;
  /**
   * Replace what a3s-rootfs did not write at an output's path (a non-empty
   * directory, a file where a directory goes). Never the root, a system
   * directory, the current directory, home or their ancestors.
   */
  readonly force?: boolean | undefined;
  /**
   * Append a dm-verity hash tree to every erofs, squashfs and ext4 output
   * (verity-output.ts), with the salt given or one derived from the tree.
   */
  readonly verity?: { readonly salt?: Buffer | undefined } | undefined;
  /**
   * Where erofs and squashfs outputs find (and, with `provision`, fetch)
   * Debian 13's mkfs.erofs and mksquashfs when the host's cannot read a tar
   * stream (image-tool-choice.ts). Without it the host's tools are used.
   */
  readonly toolCache?: { readonly dir: string; readonly provision: boolean; readonly progress?: (message: string) => void } | undefined;
}

/** Where one output is written (`tmp`) and where it will be published (`final`). */
export interface OutputPaths {
  readonly tmp: string;
  readonly final: string;
}

/** A file an output writes beside its artefact, published right after it (the dir output's sidecar). */
export interface OutputCompanion {
  readonly tmp: string;
  readonly final: string;
}

/**
 * An output consumes a tree and writes one artefact at `paths.tmp`. It never
 * publishes: `writeOutputs` gives it a temporary path beside the final one and
 * renames it into place only on success, then the companions it returns.
 */
export interface OutputWriter {
  readonly format: OutputFormat;
  write(tree: RootfsTree, paths: OutputPaths, ctx: OutputContext): Promise<readonly OutputCompanion[] | void>;
}

/** What a build reports for each output it published. */
export interface OutputResult {
  readonly format: OutputFormat;
  readonly path: string;
  /** File size; for `dir`, the bytes of regular-file content. */
  readonly bytes: number;
  /** SHA-256 of the file; null for `dir`, which is not one file. */
  readonly sha256: string | null;
  /** The dm-verity hash tree appended to the image, when the build asked for one. */
  readonly verity?: VerityInfo;
  /** True when the build cache held this output and it was copied (and verified) rather than built. */
  readonly fromCache?: boolean;
}
