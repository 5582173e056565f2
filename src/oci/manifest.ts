import { A3sError } from "../errors.js";
import { parseDigest } from "./digest.js";
import { isObject, parseJsonObject } from "./json-document.js";
import {
  CONFIG_MEDIA_TYPES,
  IMAGE_MANIFEST_MEDIA_TYPES,
  INDEX_MEDIA_TYPES,
  OCI_INDEX,
  OCI_MANIFEST,
  SCHEMA1_MEDIA_TYPES,
} from "./media-types.js";

/**
 * Largest manifest or index read into memory. The distribution spec asks
 * registries to accept manifests up to 4 MiB; anything larger is hostile
 * (a registry streaming gigabytes of JSON to exhaust our memory).
 */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** A content descriptor (image-spec descriptor.md), validated. */
export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly platform?: DescriptorPlatform;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly artifactType?: string;
}

export interface DescriptorPlatform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
  readonly "os.version"?: string;
  readonly "os.features"?: readonly string[];
}

/** An OCI image index or a Docker manifest list. */
export interface ImageIndex {
  readonly kind: "index";
  readonly mediaType: string;
  readonly manifests: readonly Descriptor[];
}

/** An OCI image manifest or a Docker image manifest v2 (schema 2). */
export interface ImageManifest {
  readonly kind: "manifest";
  readonly mediaType: string;
  readonly config: Descriptor;
  readonly layers: readonly Descriptor[];
}

export type ParsedManifest = ImageIndex | ImageManifest;

/** The media type part of a Content-Type header ("application/json; charset=utf-8" → "application/json"). */
export function mediaTypeOf(contentType: string | undefined): string | undefined {
  if (contentType === undefined) return undefined;
  const base = contentType.split(";")[0]!.trim().toLowerCase();
  return base === "" ? undefined : base;
}

/**
 * Parses a manifest or index and checks its shape. `contentType` is the
 * media type it was served or described with (a registry's Content-Type, a
 * descriptor's mediaType), when known.
 *
 * The declared media type must agree with the document's own `mediaType` and
 * with its structure: a document that claims one type and is another could
 * make two clients see two different images under one digest (the confusion
 * attack CVE-2021-41190 describes), so disagreement is refused, not guessed.
 */
export function parseManifest(bytes: Uint8Array, subject: string, contentType?: string): ParsedManifest {
  const bad = (message: string, hint = "the image is malformed or not a container image"): A3sError =>
    new A3sError("EMANIFEST", `manifest ${subject}: ${message}`, { subject, hint });
  if (bytes.byteLength > MAX_MANIFEST_BYTES) throw bad(`larger than ${MAX_MANIFEST_BYTES} bytes`);
  const served = mediaTypeOf(contentType);
  if (served !== undefined && SCHEMA1_MEDIA_TYPES.has(served)) throw schema1(subject);

  const doc = parseJsonObject(bytes, bad);
  if (doc.schemaVersion === 1) throw schema1(subject);
  if (doc.schemaVersion !== 2) throw bad(`schemaVersion is ${JSON.stringify(doc.schemaVersion)}, not 2`);

  const declared = doc.mediaType;
  if (declared !== undefined && typeof declared !== "string") throw bad("mediaType is not a string");
  if (declared !== undefined && SCHEMA1_MEDIA_TYPES.has(declared)) throw schema1(subject);
  // Loose servers label manifests application/json or octet-stream; only a
  // specific manifest type that disagrees is a contradiction.
  const servedSpecific = served !== undefined && (INDEX_MEDIA_TYPES.has(served) || IMAGE_MANIFEST_MEDIA_TYPES.has(served));
  if (declared !== undefined && servedSpecific && declared !== served) {
    throw bad(`served as ${served} but its mediaType says ${declared}`, "the registry or image is inconsistent; refusing to guess which is right");
  }
  if (served !== undefined && !servedSpecific && !["application/json", "application/octet-stream", "text/plain"].includes(served)) {
    throw bad(`served as ${served}, which is not a manifest media type`);
  }

  const hasManifests = "manifests" in doc;
  const hasLayers = "layers" in doc || "config" in doc;
  if (hasManifests && hasLayers) throw bad("has both manifests and layers; it is neither an index nor a manifest");
  // Without a declared type (older OCI images omit it) the structure decides.
  const mediaType = declared ?? (servedSpecific ? served : undefined) ?? (hasManifests ? OCI_INDEX : OCI_MANIFEST);

  if (INDEX_MEDIA_TYPES.has(mediaType)) {
    if (!hasManifests || !Array.isArray(doc.manifests)) throw bad(`its media type is ${mediaType} but it has no manifests array`);
    return { kind: "index", mediaType, manifests: doc.manifests.map((d, i) => parseDescriptor(d, `manifests[${i}]`, bad)) };
  }
  if (!IMAGE_MANIFEST_MEDIA_TYPES.has(mediaType)) throw bad(`media type ${JSON.stringify(mediaType)} is not an image manifest or index`);
  if (hasManifests) throw bad(`its media type is ${mediaType} but it lists manifests`);
  const config = parseDescriptor(doc.config, "config", bad);
  if (!CONFIG_MEDIA_TYPES.has(config.mediaType)) {
    throw bad(`config media type ${config.mediaType} is not a container image config`, "this is an OCI artifact (a chart, a signature, …), not a runnable image");
  }
  if (!Array.isArray(doc.layers)) throw bad("layers is not an array");
  const layers = doc.layers.map((d, i) => parseDescriptor(d, `layers[${i}]`, bad));
  return { kind: "manifest", mediaType, config, layers };
}

function schema1(subject: string): A3sError {
  return new A3sError("EMANIFEST", `manifest ${subject} is Docker image manifest schema 1, which is not supported`, {
    subject,
    hint: "schema 1 has no content-addressed config; re-push the image with a current docker, buildah or skopeo (schema 2 or OCI)",
  });
}

/** One descriptor of an untrusted document, checked; `bad` makes the caller's error. */
export function parseDescriptor(v: unknown, where: string, bad: (m: string) => A3sError): Descriptor {
  if (!isObject(v)) throw bad(`${where} is not a descriptor object`);
  const { mediaType, digest, size } = v;
  if (typeof mediaType !== "string" || mediaType === "") throw bad(`${where}.mediaType is missing`);
  if (typeof digest !== "string") throw bad(`${where}.digest is missing`);
  try {
    parseDigest(digest);
  } catch {
    throw bad(`${where}.digest ${JSON.stringify(digest)} is not a sha256 or sha512 digest`);
  }
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) throw bad(`${where}.size is not a non-negative integer`);
  const out: { -readonly [K in keyof Descriptor]: Descriptor[K] } = { mediaType, digest, size };
  if (v.platform !== undefined) out.platform = parsePlatformField(v.platform, `${where}.platform`, bad);
  if (v.annotations !== undefined) {
    if (!isObject(v.annotations) || !Object.values(v.annotations).every((a) => typeof a === "string")) {
      throw bad(`${where}.annotations is not a map of strings`);
    }
    out.annotations = v.annotations as Record<string, string>;
  }
  if (typeof v.artifactType === "string") out.artifactType = v.artifactType;
  return out;
}

function parsePlatformField(v: unknown, where: string, bad: (m: string) => A3sError): DescriptorPlatform {
  if (!isObject(v)) throw bad(`${where} is not an object`);
  const { os, architecture, variant } = v;
  if (typeof os !== "string" || typeof architecture !== "string") throw bad(`${where} lacks os or architecture`);
  if (variant !== undefined && typeof variant !== "string") throw bad(`${where}.variant is not a string`);
  const osVersion = v["os.version"];
  return {
    os,
    architecture,
    ...(typeof variant === "string" && variant !== "" ? { variant } : {}),
    ...(typeof osVersion === "string" ? { "os.version": osVersion } : {}),
  };
}

