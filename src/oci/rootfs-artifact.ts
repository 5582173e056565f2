import { A3sError } from "../errors.js";
import { VERITY_BLOCK, type VerityInfo } from "../formats/verity/index.js";
import { isObject, parseJsonObject } from "./json-document.js";
import { descriptorJson, jsonBlob, type LocalImage } from "./local-image.js";
import { parseDescriptor, type Descriptor } from "./manifest.js";
import {
  A3S_MEDIA_TYPE_PREFIX,
  A3S_ROOTFS_ARTIFACT_TYPE,
  A3S_ROOTFS_CONFIG,
  A3S_ROOTFS_CPIO,
  A3S_ROOTFS_CPIO_GZIP,
  A3S_ROOTFS_CPIO_ZSTD,
  A3S_ROOTFS_EROFS,
  A3S_ROOTFS_EXT4,
  A3S_ROOTFS_SQUASHFS,
  OCI_MANIFEST,
  type LayerCompression,
} from "./media-types.js";
import type { Platform } from "./platform.js";

/** The formats a3s boots, pushed as artifacts. */
export type BootImageFormat = "erofs" | "ext4" | "squashfs" | "cpio";

/** Manifest annotations of an a3s boot image artifact (docs/distribution.md). */
export const ARTIFACT_FORMAT_ANNOTATION = "vnd.a3s.rootfs.format";
export const ARTIFACT_LAYOUT_VERSION_ANNOTATION = "vnd.a3s.rootfs.layout.version";
/** On the image's layer descriptor: the dm-verity parameters of the hash tree appended to the image. */
export const VERITY_ROOT_HASH_ANNOTATION = "vnd.a3s.rootfs.verity.root-hash";
export const VERITY_SALT_ANNOTATION = "vnd.a3s.rootfs.verity.salt";
export const VERITY_HASH_OFFSET_ANNOTATION = "vnd.a3s.rootfs.verity.hash-offset";
export const VERITY_DATA_BLOCKS_ANNOTATION = "vnd.a3s.rootfs.verity.data-blocks";
export const VERITY_ALGORITHM_ANNOTATION = "vnd.a3s.rootfs.verity.algorithm";
const TITLE_ANNOTATION = "org.opencontainers.image.title";
const CREATED_ANNOTATION = "org.opencontainers.image.created";

/** Largest config of an artifact read: ours is a few dozen bytes. */
export const MAX_ARTIFACT_CONFIG_BYTES = 64 * 1024;
/** Largest boot image pulled unless the caller allows more: a disk of the pull's own making must not fill the host. */
export const MAX_BOOT_IMAGE_BYTES = 64 * 1024 * 1024 * 1024;

/**
 * dm-verity parameters of an image with an appended hash tree, as a build
 * reports them (formats/verity; the image's IMAGE.verity.json has the same
 * fields): what the layer's annotations carry, since the root hash cannot be
 * in the image it is the hash of.
 */
export type ArtifactVerity = Pick<VerityInfo, "rootHash" | "salt" | "hashOffset" | "dataBlocks" | "algorithm">;

const LAYER_TYPES: readonly { format: BootImageFormat; compression: LayerCompression; mediaType: string; title: string }[] = [
  { format: "erofs", compression: "none", mediaType: A3S_ROOTFS_EROFS, title: "rootfs.erofs" },
  { format: "ext4", compression: "none", mediaType: A3S_ROOTFS_EXT4, title: "rootfs.ext4" },
  { format: "squashfs", compression: "none", mediaType: A3S_ROOTFS_SQUASHFS, title: "rootfs.squashfs" },
  { format: "cpio", compression: "none", mediaType: A3S_ROOTFS_CPIO, title: "rootfs.cpio" },
  { format: "cpio", compression: "gzip", mediaType: A3S_ROOTFS_CPIO_GZIP, title: "rootfs.cpio.gz" },
  { format: "cpio", compression: "zstd", mediaType: A3S_ROOTFS_CPIO_ZSTD, title: "rootfs.cpio.zst" },
];

export interface RootfsArtifactInput {
  /** The image file, already written, with its digest and size. */
  readonly file: { readonly path: string; readonly digest: string; readonly size: number };
  readonly format: BootImageFormat;
  /** cpio only: how the initramfs is compressed. */
  readonly compression?: LayerCompression;
  readonly platform: Platform;
  /** SOURCE_DATE_EPOCH, stamped as the creation time. */
  readonly epoch: number;
  /** The guest config version of the rootfs in it. */
  readonly layoutVersion: number;
  readonly verity?: ArtifactVerity;
}

/**
 * A boot image as an OCI artifact (image-spec manifest.md, "guidelines for
 * artifact usage"): an image manifest whose artifactType is
 * application/vnd.a3s.rootfs.boot-image.v1, a small config of our own
 * (platform, format, layout version) and exactly one layer, the image file,
 * whose media type names its format. The dm-verity parameters, when the
 * image carries a hash tree, are annotations on that layer, so a host that
 * pulls it knows the root hash to check it against. Deterministic: the same
 * file and inputs give the same manifest digest.
 */
export function rootfsArtifact(input: RootfsArtifactInput): LocalImage {
  const compression = input.format === "cpio" ? (input.compression ?? "none") : "none";
  const type = LAYER_TYPES.find((t) => t.format === input.format && t.compression === compression);
  if (!type) throw new A3sError("EUSAGE", `a ${input.format} image cannot be ${compression}-compressed`, { subject: input.format });
  const config = jsonBlob(A3S_ROOTFS_CONFIG, {
    architecture: input.platform.architecture,
    ...(input.platform.variant ? { variant: input.platform.variant } : {}),
    os: input.platform.os,
    format: input.format,
    layoutVersion: input.layoutVersion,
  });
  const layerAnnotations: Record<string, string> = { [TITLE_ANNOTATION]: type.title };
  if (input.verity) Object.assign(layerAnnotations, verityAnnotations(input.verity, input.file.size));
  const layer: Descriptor = { mediaType: type.mediaType, digest: input.file.digest, size: input.file.size, annotations: layerAnnotations };
  const manifest = jsonBlob(OCI_MANIFEST, {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: A3S_ROOTFS_ARTIFACT_TYPE,
    config: descriptorJson(config.descriptor),
    layers: [descriptorJson(layer)],
    annotations: {
      [CREATED_ANNOTATION]: new Date(input.epoch * 1000).toISOString().replace(/\.000Z$/, "Z"),
      [ARTIFACT_FORMAT_ANNOTATION]: input.format,
      [ARTIFACT_LAYOUT_VERSION_ANNOTATION]: String(input.layoutVersion),
    },
  });
  return {
    manifest: { descriptor: { ...manifest.descriptor, artifactType: A3S_ROOTFS_ARTIFACT_TYPE }, bytes: manifest.bytes },
    blobs: [config, { descriptor: layer, path: input.file.path }],
  };
}

function verityAnnotations(v: ArtifactVerity, size: number): Record<string, string> {
  checkVerity(v, size, "the image's verity", (m) => new A3sError("EVERITY", m));
  return {
    [VERITY_ROOT_HASH_ANNOTATION]: v.rootHash,
    [VERITY_SALT_ANNOTATION]: v.salt,
    [VERITY_HASH_OFFSET_ANNOTATION]: String(v.hashOffset),
    [VERITY_DATA_BLOCKS_ANNOTATION]: String(v.dataBlocks),
    [VERITY_ALGORITHM_ANNOTATION]: v.algorithm,
  };
}

/** A boot image artifact, read from its manifest and checked. */
export interface RootfsArtifact {
  readonly format: BootImageFormat;
  readonly compression: LayerCompression;
  /** The image file's descriptor. */
  readonly image: Descriptor;
  readonly config: Descriptor;
  readonly layoutVersion: number | undefined;
  readonly verity?: ArtifactVerity;
}

/**
 * Whether a manifest is an a3s artifact (of any version): its artifactType
 * or its config's media type is one of ours. Only looks: a document that is
 * not JSON is not ours, and the image parser reports what is wrong with it.
 */
export function isRootfsArtifactManifest(bytes: Uint8Array): boolean {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8"));
  } catch {
    return false;
  }
  if (!isObject(doc)) return false;
  const ours = (v: unknown): boolean => typeof v === "string" && v.startsWith(A3S_MEDIA_TYPE_PREFIX);
  return ours(doc.artifactType) || (isObject(doc.config) && ours(doc.config.mediaType));
}

/**
 * Parses an a3s artifact manifest, which is untrusted: it must be an OCI
 * image manifest of this artifact type and version, with our config type and
 * exactly one layer of a boot image media type, whose declared size is
 * within `maxBytes`; a format annotation must agree with the layer; verity
 * annotations, when present, must be complete and consistent with the
 * layer's size. Anything else is refused (EARTIFACT), never guessed at.
 */
export function parseRootfsArtifact(bytes: Uint8Array, subject: string, maxBytes = MAX_BOOT_IMAGE_BYTES): RootfsArtifact {
  const bad = (why: string, hint = "the artifact was not made by a3s-rootfs, or was altered"): A3sError =>
    new A3sError("EARTIFACT", `artifact ${subject}: ${why}`, { subject, hint });
  const doc = parseJsonObject(bytes, bad);
  if (doc.schemaVersion !== 2) throw bad(`schemaVersion is ${JSON.stringify(doc.schemaVersion)}, not 2`);
  if (doc.mediaType !== OCI_MANIFEST) throw bad(`its media type is ${JSON.stringify(doc.mediaType)}, not ${OCI_MANIFEST}`);
  if (doc.artifactType !== A3S_ROOTFS_ARTIFACT_TYPE) {
    const newer = typeof doc.artifactType === "string" && doc.artifactType.startsWith(A3S_MEDIA_TYPE_PREFIX);
    throw bad(
      `its artifactType is ${JSON.stringify(doc.artifactType)}, not ${A3S_ROOTFS_ARTIFACT_TYPE}`,
      newer ? "it was made by another version of a3s-rootfs; use that version to run it" : "it is not an a3s boot image",
    );
  }
  const config = parseDescriptor(doc.config, "config", bad);
  if (config.mediaType !== A3S_ROOTFS_CONFIG) throw bad(`its config is ${config.mediaType}, not ${A3S_ROOTFS_CONFIG}`);
  if (config.size > MAX_ARTIFACT_CONFIG_BYTES) throw bad(`its config declares ${config.size} bytes, more than the ${MAX_ARTIFACT_CONFIG_BYTES} allowed`);
  if (!Array.isArray(doc.layers)) throw bad("layers is not an array");
  if (doc.layers.length !== 1) throw bad(`it has ${doc.layers.length} layers; a boot image artifact has exactly one`);
  const image = parseDescriptor(doc.layers[0], "layers[0]", bad);
  const type = LAYER_TYPES.find((t) => t.mediaType === image.mediaType);
  if (!type) throw bad(`its layer is ${JSON.stringify(image.mediaType)}, which is not a boot image media type`);
  if (image.size > maxBytes) throw bad(`its image declares ${image.size} bytes, more than the ${maxBytes} allowed`, "raise the limit only for a registry you trust");
  if (image.size === 0) throw bad("its image is empty");
  const annotations = isObject(doc.annotations) ? doc.annotations : {};
  const format = annotations[ARTIFACT_FORMAT_ANNOTATION];
  if (format !== undefined && format !== type.format) throw bad(`its annotations say ${JSON.stringify(format)} but its layer is ${type.format}`);
  const versionText = annotations[ARTIFACT_LAYOUT_VERSION_ANNOTATION];
  const layoutVersion = typeof versionText === "string" && /^\d{1,6}$/.test(versionText) ? Number(versionText) : undefined;
  const verity = parseVerity(image.annotations ?? {}, image.size, bad);
  return { format: type.format, compression: type.compression, image, config, layoutVersion, ...(verity ? { verity } : {}) };
}

/** The platform and format an artifact's config names, checked against its manifest. */
export function parseRootfsArtifactConfig(bytes: Uint8Array, subject: string, artifact: RootfsArtifact): Platform {
  const bad = (why: string): A3sError => new A3sError("EARTIFACT", `artifact config ${subject}: ${why}`, { subject });
  const doc = parseJsonObject(bytes, bad);
  const { architecture, os, variant, format } = doc;
  if (typeof architecture !== "string" || !/^[A-Za-z0-9_.-]{1,32}$/.test(architecture)) throw bad("architecture is missing or invalid");
  if (typeof os !== "string" || !/^[A-Za-z0-9_.-]{1,32}$/.test(os)) throw bad("os is missing or invalid");
  if (variant !== undefined && (typeof variant !== "string" || !/^[A-Za-z0-9_.-]{1,32}$/.test(variant))) throw bad("variant is invalid");
  if (format !== artifact.format) throw bad(`its format is ${JSON.stringify(format)} but the manifest's layer is ${artifact.format}`);
  return { os, architecture, ...(typeof variant === "string" ? { variant } : {}) };
}

function parseVerity(a: Readonly<Record<string, string>>, size: number, bad: (why: string) => A3sError): ArtifactVerity | undefined {
  const keys = [VERITY_ROOT_HASH_ANNOTATION, VERITY_SALT_ANNOTATION, VERITY_HASH_OFFSET_ANNOTATION, VERITY_DATA_BLOCKS_ANNOTATION, VERITY_ALGORITHM_ANNOTATION];
  const present = keys.filter((k) => a[k] !== undefined);
  if (present.length === 0) return undefined;
  if (present.length !== keys.length) throw bad(`its verity annotations are incomplete (it has ${present.join(", ")})`);
  const number = (key: string): number => {
    const text = a[key]!;
    if (!/^\d{1,16}$/.test(text)) throw bad(`${key} is not a number: ${JSON.stringify(text.slice(0, 40))}`);
    return Number(text);
  };
  const v = {
    rootHash: a[VERITY_ROOT_HASH_ANNOTATION]!,
    salt: a[VERITY_SALT_ANNOTATION]!,
    hashOffset: number(VERITY_HASH_OFFSET_ANNOTATION),
    dataBlocks: number(VERITY_DATA_BLOCKS_ANNOTATION),
    algorithm: a[VERITY_ALGORITHM_ANNOTATION] as "sha256",
  };
  checkVerity(v, size, "its verity", bad);
  return v;
}

/** The same rules for what we push and what we pull. */
function checkVerity(v: ArtifactVerity, size: number, what: string, bad: (why: string) => Error): void {
  if (v.algorithm !== "sha256") throw bad(`${what} algorithm is ${JSON.stringify(v.algorithm)}; only sha256 is supported`);
  if (!/^[0-9a-f]{64}$/.test(v.rootHash)) throw bad(`${what} root hash is not 64 lowercase hex digits`);
  if (!/^(?:[0-9a-f]{2}){0,256}$/.test(v.salt)) throw bad(`${what} salt is not hex of at most 256 bytes`);
  if (v.hashOffset % VERITY_BLOCK !== 0 || v.hashOffset !== v.dataBlocks * VERITY_BLOCK || v.dataBlocks === 0) {
    throw bad(`${what} hash offset ${v.hashOffset} is not ${v.dataBlocks} whole 4 KiB data blocks`);
  }
  if (v.hashOffset + VERITY_BLOCK > size) throw bad(`${what} hash tree would start at byte ${v.hashOffset}, past the image's end (${size} bytes)`);
}
