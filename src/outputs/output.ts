import type { ErofsCompression } from "../formats/erofs/index.js";
import type { VerityInfo } from "../formats/verity/index.js";
import type { LayerCompression } from "../oci/media-types.js";
import type { RegistryCredentials } from "../oci/registry/credentials.js";
import type { RootfsTree } from "../tree/index.js";
import type { FileDigest } from "../util/file-sha256.js";

/** Every format `-o FORMAT:PATH` accepts. */
export const OUTPUT_FORMATS = ["dir", "tar", "cpio", "ext4", "erofs", "squashfs", "oci"] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export interface OutputSpec {
  readonly format: OutputFormat;
  /**
   * Where the finished output is published (absolute or relative to the
   * cwd); for a push, "docker://REF" (nothing is written locally).
   */
  readonly path: string;
  /** `oci`: the name the layout gives the image (org.opencontainers.image.ref.name); default "latest". */
  readonly tag?: string;
  /** `oci` and pushed images: how the layer is compressed; a pushed `cpio`: the initramfs. Default gzip. */
  readonly compression?: LayerCompression;
  /**
   * `erofs`: how file data is compressed (formats/erofs/writer.ts). Default
   * lz4hc; "none" builds fastest and boots fastest under TCG, for a larger
   * image.
   */
  readonly erofsCompression?: ErofsCompression;
  /**
   * Push the output to a registry instead of writing it: format `oci` pushes
   * the rootfs as an OCI image (`-o docker://REF`), erofs, ext4, squashfs
   * and cpio push the boot image as an OCI artifact (`-o erofs:docker://REF`).
   */
  readonly push?: OutputPush;
}

/** Where and how an output is pushed. */
export interface OutputPush {
  /** The reference, as `docker://` takes it: "registry.example.com/team/box:v1" ("latest" when no tag). */
  readonly reference: string;
  /** Default: docker's config.json and its credential helpers, as for pulls. */
  readonly credentials?: RegistryCredentials;
  /** Plain HTTP (and unverified TLS) to a registry that is not on loopback. */
  readonly insecure?: boolean;
  /** Blobs larger than this are uploaded in chunks of this size (default 64 MiB); smaller ones in one request. */
  readonly chunkBytes?: number;
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

/** What a writer reports beside the artefact it wrote. */
export interface WrittenOutput {
  /** Files written beside the artefact (the dir output's sidecar), published right after it. */
  readonly companions?: readonly OutputCompanion[];
  /** The artefact's SHA-256 and size, where the writer saw every byte it wrote: nobody need read the file back to hash it. */
  readonly digest?: FileDigest;
}

/**
 * An output consumes a tree and writes one artefact at `paths.tmp`. It never
 * publishes: `writeOutputs` gives it a temporary path beside the final one and
 * renames it into place only on success, then the companions it returns.
 */
export interface OutputWriter {
  readonly format: OutputFormat;
  write(tree: RootfsTree, paths: OutputPaths, ctx: OutputContext): Promise<WrittenOutput | void>;
}

/** What a build reports for each output it published. */
export interface OutputResult {
  readonly format: OutputFormat;
  readonly path: string;
  /** File size; for `dir`, the bytes of regular-file content. */
  readonly bytes: number;
  /** SHA-256 of the file; null for `dir`, `oci` and pushed images, which are not one file. */
  readonly sha256: string | null;
  /** `oci` and pushes: the digest of the image's (or artifact's) manifest. */
  readonly digest?: string;
  /** Pushes: the reference pushed, pinned to the digest: "registry/repository:tag@sha256:…". */
  readonly reference?: string;
  /** Pushes: what went over the network. */
  readonly pushed?: PushReport;
  /**
   * The dm-verity hash tree appended to the image, when the build asked for
   * one. A pushed artifact carries it in its layer's annotations (its
   * `hashPath` is then the `docker://` reference).
   */
  readonly verity?: VerityInfo;
  /** True when the build cache held this output and it was copied (and verified) rather than built. */
  readonly fromCache?: boolean;
}

/** What a push sent: blobs uploaded, mounted from another repository, or found there already. */
export interface PushReport {
  readonly uploaded: number;
  readonly mounted: number;
  readonly existing: number;
  /** Blob bytes sent (a resumed chunk counts once per send). */
  readonly uploadedBytes: number;
  /** Whether the manifest was put, or the tag named it already. */
  readonly manifest: "put" | "existing";
}
