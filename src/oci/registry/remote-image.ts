import { A3sError } from "../../errors.js";
import { parseImageConfig } from "../image-config.js";
import type { ImageLayer, ResolvedImage } from "../image.js";
import { formatPlatform, platformMatches, type Platform } from "../platform.js";
import { formatReference, type ImageReference } from "../reference.js";
import type { RegistryClient, ResolvedManifest } from "./client.js";
import { LayerDownloads } from "./layer-downloads.js";

export interface RemoteImageOptions {
  /** True when the user named the platform: an image for another one is then an error, not a warning. */
  readonly platformChosen: boolean;
  readonly warn: (message: string) => void;
  readonly progress: (message: string) => void;
  /** Stops every download (the build was cancelled); reading a layer then fails. */
  readonly signal?: AbortSignal | undefined;
}

/** An image in a registry, resolved to one platform, whose layers download as they are needed. */
export interface RemoteImage {
  readonly image: ResolvedImage;
  /** The manifest and index digests resolving walked (the cache keeps them) and the config. */
  readonly resolved: ResolvedManifest;
  /** Stops the downloads still running and waits for them; call it once the layers are applied or the build failed. */
  close(): Promise<void>;
}

/**
 * Resolves `ref` for `wanted` (walking an index), reads and checks its
 * config, and returns the image with layers that download through
 * LayerDownloads (the first missing one streams as it arrives, the rest in
 * the background). Nothing is downloaded for a layer whose uncompressed tar
 * is cached already, so a rebuild of the same image costs one manifest request.
 */
export async function openRemoteImage(client: RegistryClient, ref: ImageReference, wanted: Platform, opts: RemoteImageOptions): Promise<RemoteImage> {
  const reference = formatReference(ref);
  opts.progress(`resolving ${reference} for ${formatPlatform(wanted)}`);
  const resolved = await client.resolve(ref, wanted);
  const config = parseImageConfig(resolved.configBytes, resolved.manifest.config.digest);
  const platform = { os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) };
  if (!platformMatches(wanted, platform)) {
    const message = `${reference} is an image for ${formatPlatform(platform)}, not ${formatPlatform(wanted)}`;
    if (opts.platformChosen) throw new A3sError("EPLATFORM", message, { subject: reference, hint: "the registry has no image for that platform under this name" });
    opts.warn(message);
  }
  const descriptors = resolved.manifest.layers;
  const diffIds = config.rootfs.diff_ids;
  const downloads = new LayerDownloads(client, ref, descriptors, opts.progress, opts.signal);
  await downloads.start(diffIds);
  const layers: ImageLayer[] = descriptors.map((d, i) => ({
    digest: d.digest,
    size: d.size,
    mediaType: d.mediaType,
    diffId: diffIds[i] ?? "",
    location: `${ref.registry}/${ref.repository}@${d.digest}`,
    open: () => downloads.open(i),
    file: () => downloads.file(i),
    verify: () => downloads.verifyStored(i),
  }));
  const image: ResolvedImage = { reference, manifestDigest: resolved.manifestDigest, config, layers, platform };
  return { image, resolved, close: () => downloads.close() };
}
