import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { ContentStore } from "../../src/oci/store/content-store.js";
import { parseImageConfig } from "../../src/oci/image-config.js";
import { imageToTree } from "../../src/oci/layers/image-to-tree.js";
import { checkBlob } from "../../src/oci/verified-blob.js";
import type { ImageLayer, ResolvedImage } from "../../src/oci/image.js";
import type { LayerLimits } from "../../src/oci/layers/layer-limits.js";
import { OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD } from "../../src/oci/media-types.js";
import { blobOf, makeImage, type ImageOptions, type TestImage, type TestLayer } from "./test-image.js";
import { tempDir } from "./temp-dir.js";

export function sha256(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

/** A layer from raw tar bytes (e.g. from raw-tar.ts), compressed as asked. */
export function rawLayer(tar: Buffer, compression: "none" | "gzip" | "zstd" = "gzip", mediaType?: string): TestLayer {
  const blob =
    compression === "gzip"
      ? gzipSync(tar)
      : compression === "zstd"
        ? execFileSync("zstd", ["-q", "-c", "-3"], { input: tar, maxBuffer: 1 << 30 })
        : tar;
  const type = mediaType ?? (compression === "gzip" ? OCI_LAYER_GZIP : compression === "zstd" ? OCI_LAYER_ZSTD : OCI_LAYER_TAR);
  return { ...blobOf(blob, type), diffId: sha256(tar) };
}

/**
 * The ResolvedImage a source would build for a test image, its layers read
 * from memory; with `blobDir`, each blob is also written there as a file of
 * its own, as a directory layout has it (`ImageLayer.file`).
 */
export function resolvedImage(image: TestImage, reference = "test/image:latest", blobDir?: string): ResolvedImage {
  const config = parseImageConfig(image.config.bytes, image.config.digest);
  const layers: ImageLayer[] = image.layers.map((l, i) => {
    const file = blobDir === undefined ? undefined : join(blobDir, `layer-${i}`);
    if (file) writeFileSync(file, l.bytes);
    return {
      digest: l.digest,
      size: l.size,
      mediaType: l.mediaType,
      diffId: l.diffId,
      location: file ?? `memory:${l.digest}`,
      open: async () => Readable.from([l.bytes]),
      ...(file ? { file: async () => ({ kind: "unchecked" as const, path: file }) } : {}),
      verify: async () => checkBlob(Readable.from([l.bytes]), { ...l, location: file ?? `memory:${l.digest}` }, reference),
    };
  });
  return {
    reference,
    manifestDigest: image.manifest.digest,
    config,
    layers,
    platform: { os: config.os, architecture: config.architecture },
  };
}

export interface ApplyOptions extends ImageOptions {
  readonly limits?: LayerLimits;
  /** A store to reuse (a cache hit); default: a fresh one in a temporary directory. */
  readonly store?: ContentStore;
  readonly progress?: (m: string) => void;
  /** Each blob as a file of its own (as in a directory layout), so a gzip layer is decoded by igzip where the host has it. */
  readonly blobFiles?: boolean;
}

/** Applies test layers as one image into a fresh tree (through the content store, as a real build does). */
export async function applyLayers(
  layers: readonly TestLayer[],
  opts: ApplyOptions = {},
): Promise<Awaited<ReturnType<typeof imageToTree>> & { store: ContentStore }> {
  const store = opts.store ?? new ContentStore(join(tempDir("a3s-store-"), "blobs"));
  const image = resolvedImage(makeImage(layers, opts), undefined, opts.blobFiles ? tempDir("a3s-blobs-") : undefined);
  const result = await imageToTree(image, {
    epoch: 1_000_000_000,
    store,
    progress: opts.progress ?? (() => {}),
    ...(opts.limits ? { limits: opts.limits } : {}),
  });
  return { ...result, store };
}
