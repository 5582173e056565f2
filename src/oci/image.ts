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
   * The blob as a whole regular file on this host (a directory layout's
   * blob), when it is one: a decoder in another process reads it there
   * (see layer-decompress.ts). Its bytes are checked against `digest` as
   * for `open()`. Absent, or undefined, for a blob that is not a file of
   * its own (an archive's member, a download).
   */
  file?(): Promise<string | undefined>;
  /**
   * Hashes the blob where it is kept, fetching nothing, and throws when it
   * does not match its digest: EDIGEST naming the file, or ECACHE when it
   * was a cached copy, which is then removed (and fetched again on the next
   * open). Used to find the cause when reading the layer failed halfway
   * (a flipped byte in a gzip stream fails the decoder before the digest).
   */
  verify(): Promise<void>;
}

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
