/**
 * Media types of the OCI image spec and their Docker (image manifest v2)
 * equivalents. Every OCI module names a media type through these constants,
 * so a typo is a compile error rather than an image silently not recognised.
 */

export const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
export const OCI_CONFIG = "application/vnd.oci.image.config.v1+json";

export const OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar";
export const OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";
export const OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd";
/** Deprecated by the image spec but still found in the wild (Windows base layers). */
export const OCI_LAYER_NONDIST_TAR = "application/vnd.oci.image.layer.nondistributable.v1.tar";
export const OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
export const OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";

export const DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json";
export const DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";
export const DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json";
export const DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip";
export const DOCKER_LAYER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/** Some tools (buildkit with compression=uncompressed) label plain tar layers with this name. */
export const DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar";
/** Docker's zstd layers reuse the OCI media type; this older name appears in a few registries. */
export const DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd";

/** Image manifest schema 1: unsigned and signed. Refused: no content-addressed config, no diff_ids. */
export const DOCKER_SCHEMA1_MANIFEST = "application/vnd.docker.distribution.manifest.v1+json";
export const DOCKER_SCHEMA1_SIGNED_MANIFEST = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/** Manifests that list other manifests by platform. */
export const INDEX_MEDIA_TYPES: ReadonlySet<string> = new Set([OCI_INDEX, DOCKER_MANIFEST_LIST]);
/** Manifests that describe one image: a config and layers. */
export const IMAGE_MANIFEST_MEDIA_TYPES: ReadonlySet<string> = new Set([OCI_MANIFEST, DOCKER_MANIFEST]);
export const SCHEMA1_MEDIA_TYPES: ReadonlySet<string> = new Set([DOCKER_SCHEMA1_MANIFEST, DOCKER_SCHEMA1_SIGNED_MANIFEST]);
export const CONFIG_MEDIA_TYPES: ReadonlySet<string> = new Set([OCI_CONFIG, DOCKER_CONFIG]);

/**
 * The Accept header of a manifest request: every kind we can use, best first.
 * Schema 1 is deliberately absent, so a registry that can convert serves v2;
 * one that answers with schema 1 anyway gets a clear refusal.
 */
export const MANIFEST_ACCEPT = [OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST].join(", ");

export type LayerCompression = "none" | "gzip" | "zstd";

const LAYER_COMPRESSION: ReadonlyMap<string, LayerCompression> = new Map([
  [OCI_LAYER_TAR, "none"],
  [OCI_LAYER_GZIP, "gzip"],
  [OCI_LAYER_ZSTD, "zstd"],
  [OCI_LAYER_NONDIST_TAR, "none"],
  [OCI_LAYER_NONDIST_GZIP, "gzip"],
  [OCI_LAYER_NONDIST_ZSTD, "zstd"],
  [DOCKER_LAYER_GZIP, "gzip"],
  [DOCKER_LAYER_FOREIGN_GZIP, "gzip"],
  [DOCKER_LAYER_TAR, "none"],
  [DOCKER_LAYER_ZSTD, "zstd"],
]);

/** The compression a layer media type declares, or undefined for a media type that is not a layer we know. */
export function layerCompression(mediaType: string): LayerCompression | undefined {
  return LAYER_COMPRESSION.get(mediaType);
}

/** Annotation buildkit puts on index entries that are attestations (SBOM, provenance), not runnable images. */
export const DOCKER_REFERENCE_TYPE_ANNOTATION = "vnd.docker.reference.type";
export const ATTESTATION_MANIFEST = "attestation-manifest";

/** OCI 1.1's empty JSON blob `{}`: the config of an artifact that has none of its own. */
export const OCI_EMPTY = "application/vnd.oci.empty.v1+json";

/**
 * a3s boot images as OCI artifacts (docs/distribution.md): an OCI image
 * manifest whose artifactType says what it is, a small config of our own
 * and exactly one layer, the image file, whose media type names its format.
 */
export const A3S_ROOTFS_ARTIFACT_TYPE = "application/vnd.a3s.rootfs.boot-image.v1";
export const A3S_ROOTFS_CONFIG = "application/vnd.a3s.rootfs.config.v1+json";
/** The prefix every a3s media type has; a manifest using it is ours, of this version or a later one. */
export const A3S_MEDIA_TYPE_PREFIX = "application/vnd.a3s.rootfs.";
export const A3S_ROOTFS_EROFS = "application/vnd.a3s.rootfs.image.erofs.v1";
export const A3S_ROOTFS_EXT4 = "application/vnd.a3s.rootfs.image.ext4.v1";
export const A3S_ROOTFS_SQUASHFS = "application/vnd.a3s.rootfs.image.squashfs.v1";
export const A3S_ROOTFS_CPIO = "application/vnd.a3s.rootfs.image.cpio.v1";
export const A3S_ROOTFS_CPIO_GZIP = "application/vnd.a3s.rootfs.image.cpio.v1+gzip";
export const A3S_ROOTFS_CPIO_ZSTD = "application/vnd.a3s.rootfs.image.cpio.v1+zstd";
