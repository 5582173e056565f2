import { createReadStream } from "node:fs";
import { Readable } from "node:stream";
import { digestOf } from "./digest.js";
import type { Descriptor } from "./manifest.js";

/** One blob of an image made on this host: its descriptor and where its bytes are. */
export interface LocalBlob {
  readonly descriptor: Descriptor;
  /** The bytes, when they are small (a config). */
  readonly bytes?: Buffer;
  /** Otherwise the file that holds exactly them (a layer, a boot image). */
  readonly path?: string;
}

/**
 * An image (or artifact) made on this host, ready to be written as an OCI
 * layout or pushed to a registry: its manifest, exactly as it will be
 * stored, and every blob it names.
 */
export interface LocalImage {
  readonly manifest: { readonly descriptor: Descriptor; readonly bytes: Buffer };
  /** The config first, then the layers, as the manifest lists them. */
  readonly blobs: readonly LocalBlob[];
}

/** The blob's bytes, from memory or from its file. */
export function openLocalBlob(blob: LocalBlob): NodeJS.ReadableStream {
  if (blob.bytes) return Readable.from([blob.bytes]);
  if (blob.descriptor.size === 0) return Readable.from([]);
  return createReadStream(blob.path as string, { highWaterMark: 1 << 20 });
}

/** A byte range of the blob (an upload's chunk), from memory or from its file. */
export function openLocalBlobRange(blob: LocalBlob, start: number, end: number): NodeJS.ReadableStream {
  if (blob.bytes) return Readable.from([blob.bytes.subarray(start, end)]);
  if (end <= start) return Readable.from([]);
  return createReadStream(blob.path as string, { start, end: end - 1, highWaterMark: 1 << 20 });
}

/** A small JSON document (a config, a manifest) as the bytes that are stored and hashed. */
export function jsonBlob(mediaType: string, doc: unknown): { descriptor: Descriptor; bytes: Buffer } {
  const bytes = Buffer.from(JSON.stringify(doc), "utf8");
  return { descriptor: { mediaType, digest: digestOf(bytes), size: bytes.length }, bytes };
}

/** A descriptor as it is written into a manifest or index: only the fields it has, in the spec's order. */
export function descriptorJson(d: Descriptor): Record<string, unknown> {
  return {
    mediaType: d.mediaType,
    ...(d.artifactType !== undefined ? { artifactType: d.artifactType } : {}),
    digest: d.digest,
    size: d.size,
    ...(d.annotations !== undefined && Object.keys(d.annotations).length > 0 ? { annotations: d.annotations } : {}),
    ...(d.platform !== undefined ? { platform: d.platform } : {}),
  };
}
