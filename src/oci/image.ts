import type { FileIdentity } from "../util/file-identity.js";
import type { WriteProgress } from "../util/write-progress.js";
import type { OciImageConfig } from "./image-config.js";

/**
 * The image model every place an image lives in (registry/, layout/,
 * archive/) produces, and layers/ applies: go-containerregistry's v1.Image,
 * narrowed to what a rootfs build reads.
 */

/** The platform an image was built for, as an OCI index and config name it. */
export interface ImagePlatform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
}

/**
 * One layer of an image, wherever it lives (a registry, an OCI layout, a
 * `docker save` archive). `open()` returns the blob exactly as stored
 * (compressed or not); the applier finds out which by its media type and,
 * when that is vague, by its first bytes.
 */
export interface ImageLayer {
  /** Digest of the blob as stored (the manifest's layer digest). */
  readonly digest: string;
  /** Size of the blob as stored, from the manifest. */
  readonly size: number;
  readonly mediaType: string;
  /** The config's diff_id for this layer: the sha256 of the uncompressed tar. */
  readonly diffId: string;
  /** Where the blob is read from, for messages: a file, an archive member, a registry address. */
  readonly location: string;
  open(): Promise<NodeJS.ReadableStream>;
  /**
   * The blob as a file on this host, when it is one (a directory layout's
   * blob, a download into the content store): a decoder in another process
   * reads it there (see layer-decompress.ts). Absent, or undefined, for a
   * blob that is not a file of its own (an archive's member).
   */
  file?(): Promise<LayerBlobFile | undefined>;
  /**
   * Hashes the blob where it is kept, fetching nothing, and throws when it
   * does not match its digest: EDIGEST naming the file, or ECACHE when it
   * was a cached copy, which is then removed (and fetched again on the next
   * open). Used to find the cause when reading the layer failed halfway
   * (a flipped byte in a gzip stream fails the decoder before the digest).
   */
  verify(): Promise<void>;
}

/**
 * A layer's blob as a file, and what is known of its bytes, which decides
 * how a decoder reading it checks them (layer-decompress.ts).
 */
export type LayerBlobFile =
  /** A whole file nobody has checked (a directory layout's): hashed as it is decoded. */
  | { readonly kind: "unchecked"; readonly path: string }
  /**
   * A whole file that was hashed against the digest as it was written (a
   * content store's blob): only checked to be still that file.
   */
  | { readonly kind: "verified"; readonly path: string; readonly identity: FileIdentity }
  /**
   * A file still being written as the blob downloads (the store's
   * temporary, held open and named by `path` in /proc/self/fd, since its
   * own name goes once it is published): a decoder follows it as it grows.
   * The download hashes what it writes; `stored` settles once the blob is
   * stored, its digest matched, or the download has failed. `release`
   * closes the file when the decoder is done with it.
   */
  | {
      readonly kind: "growing";
      readonly path: string;
      readonly progress: WriteProgress;
      readonly stored: Promise<unknown>;
      release(): void;
    };

/** An image, resolved to one platform, that every image source produces. */
export interface ResolvedImage {
  /** The reference as the user wrote it (or as normalised), for messages and reports. */
  readonly reference: string;
  readonly manifestDigest: string;
  /** The parsed and validated config (see `parseImageConfig`). */
  readonly config: OciImageConfig;
  /** Bottom layer first, as in the manifest. */
  readonly layers: readonly ImageLayer[];
  readonly platform: ImagePlatform;
}
