import { PassThrough } from "node:stream";
import { A3sError } from "../errors.js";
import { ContentStore } from "../oci/content-store.js";
import { parseCredsFlag, type RegistryCredentials } from "../oci/docker-credentials.js";
import { parseImageConfig } from "../oci/image-config.js";
import { ImageRecords } from "../oci/image-records.js";
import { imageToTree, type ImageLayer, type LayerLimits, type ResolvedImage } from "../oci/image.js";
import type { Descriptor } from "../oci/manifest.js";
import { formatPlatform, hostPlatform, parsePlatform, platformMatches, type Platform } from "../oci/platform.js";
import { formatReference, parseReference } from "../oci/reference.js";
import { RegistryClient, type FetchBlobOptions, type RegistryClientOptions } from "../oci/registry-client.js";
import type { RetryPolicy } from "../oci/registry-retry.js";
import type { RootfsSource, SourceContext, SourceResult } from "./source.js";

export interface DockerRegistrySourceOptions {
  /** "os/arch[/variant]" to pick from an index (default: the host's). */
  readonly platform?: string;
  /** "user:password" (the CLI's --creds), or parsed credentials. */
  readonly creds?: string | RegistryCredentials;
  /** Plain HTTP (and unverified TLS) to registries that are not on loopback. */
  readonly insecure?: boolean;
  /** The content store (default: the user's cache). */
  readonly store?: ContentStore;
  /** Where used images are recorded for `cache gc` (default: the user's cache; false: not recorded). */
  readonly records?: ImageRecords | false;
  readonly limits?: LayerLimits;
  readonly retry?: Partial<RetryPolicy>;
  readonly concurrency?: number;
  /** Receives the client after a load, for its statistics (benchmarks and tests). */
  readonly onClient?: (client: RegistryClient) => void;
}

/**
 * `docker://REF`: an image from a registry. The manifest for the platform is
 * resolved, missing layer blobs are downloaded (a few at once) into the
 * content store while earlier layers are already being applied (the first
 * one is decompressed as its bytes arrive), and the layers become the tree. A layer whose uncompressed tar is cached already is
 * not downloaded at all, so a rebuild of the same image costs one manifest
 * request.
 */
export function dockerRegistrySource(rest: string, opts: DockerRegistrySourceOptions = {}): RootfsSource {
  if (!rest.startsWith("//") || rest.length === 2) {
    throw new A3sError("EUSAGE", `invalid source docker:${rest}: expected docker://REFERENCE`, {
      subject: `docker:${rest}`,
      hint: "e.g. docker://alpine:3.20 or docker://localhost:5000/team/app@sha256:…",
    });
  }
  const ref = parseReference(rest.slice(2));
  const wanted = opts.platform ? parsePlatform(opts.platform) : hostPlatform();
  const credentials = typeof opts.creds === "string" ? parseCredsFlag(opts.creds) : opts.creds;
  return {
    spec: `docker://${rest.slice(2)}`,
    providesAgent: true,
    load: (ctx) => load(ref, wanted, opts.platform !== undefined, credentials, opts, ctx),
  };
}

async function load(
  ref: ReturnType<typeof parseReference>,
  wanted: Platform,
  platformChosen: boolean,
  credentials: RegistryCredentials | undefined,
  opts: DockerRegistrySourceOptions,
  ctx: SourceContext,
): Promise<SourceResult> {
  const store = opts.store ?? new ContentStore();
  const clientOpts: RegistryClientOptions = {
    store,
    warn: ctx.warn,
    ...(credentials ? { credentials } : {}),
    ...(opts.insecure !== undefined ? { insecure: opts.insecure } : {}),
    ...(opts.retry ? { retry: opts.retry } : {}),
    ...(opts.concurrency !== undefined ? { concurrency: opts.concurrency } : {}),
  };
  const client = new RegistryClient(clientOpts);
  opts.onClient?.(client);
  const reference = formatReference(ref);
  ctx.progress(`resolving ${reference} for ${formatPlatform(wanted)}`);
  const resolved = await client.resolve(ref, wanted);
  const config = parseImageConfig(resolved.configBytes, resolved.manifest.config.digest);
  const platform = { os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) };
  if (!platformMatches(wanted, platform)) {
    const message = `${reference} is an image for ${formatPlatform(platform)}, not ${formatPlatform(wanted)}`;
    if (platformChosen) throw new A3sError("EPLATFORM", message, { subject: reference, hint: "the registry has no image for that platform under this name" });
    ctx.warn(message);
  }

  const descriptors = resolved.manifest.layers;
  const diffIds = config.rootfs.diff_ids;
  const abort = new AbortController();
  const downloads = new Map<number, Promise<string>>();
  const fetchOptions = (i: number, signal: AbortSignal, onChunk?: (b: Buffer) => Promise<void>): FetchBlobOptions => ({
    onProgress: layerProgress(ctx, i, descriptors),
    signal,
    ...(onChunk ? { onChunk } : {}),
  });
  const prefetch = (i: number): void => {
    if (downloads.has(i)) return;
    const p = client.fetchBlob(ref, descriptors[i]!, fetchOptions(i, abort.signal));
    // Failures surface when the layer is opened; this only keeps an early
    // failure of a later layer from being reported as unhandled.
    p.catch(() => {});
    downloads.set(i, p);
  };
  const stream = (i: number): NodeJS.ReadableStream => {
    const out = new PassThrough({ highWaterMark: 1 << 20 });
    const mine = new AbortController();
    abort.signal.addEventListener("abort", () => mine.abort(), { once: true });
    // A consumer that stops reading (an error in the layer) must not leave the download waiting on it.
    out.once("close", () => {
      if (!out.writableFinished) mine.abort();
    });
    let fed = 0;
    const feed = async (b: Buffer): Promise<void> => {
      fed += b.length;
      if (out.destroyed) return;
      if (out.write(b)) return;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          out.off("drain", done);
          out.off("close", done);
          resolve();
        };
        out.on("drain", done);
        out.on("close", done);
      });
    };
    const p = client.fetchBlob(ref, descriptors[i]!, fetchOptions(i, mine.signal, feed));
    // The stream ends only once the store has verified the whole blob; a bad
    // digest reaches the reader as an error, never as a clean end.
    p.then(
      () => {
        if (fed > 0 || descriptors[i]!.size === 0) return out.end();
        // Another build stored the blob first, so nothing came through us: read it from the store.
        const stored = store.open(descriptors[i]!.digest);
        stored.once("error", (e) => out.destroy(e));
        stored.pipe(out);
      },
      (e: unknown) => out.destroy(e as Error),
    );
    downloads.set(i, p);
    return out;
  };

  // Which layers need their blob: those whose uncompressed tar is not cached.
  const needed: number[] = [];
  for (const [i, d] of descriptors.entries()) {
    const diffId = diffIds[i];
    const cached = diffId !== undefined && (await store.has(diffId));
    if (!cached && !(await store.has(d.digest, d.size))) needed.push(i);
  }
  // The first of them is applied first: it streams into the applier as it
  // downloads. The rest download in the background meanwhile, a few at a time.
  for (const i of needed.slice(1)) prefetch(i);
  const layers: ImageLayer[] = descriptors.map((d, i) => ({
    digest: d.digest,
    size: d.size,
    mediaType: d.mediaType,
    diffId: diffIds[i] ?? "",
    open: async () => {
      const pending = downloads.get(i);
      if (pending) await pending;
      else if (!(await store.has(d.digest, d.size))) return stream(i);
      return store.open(d.digest);
    },
  }));
  const image: ResolvedImage = { reference, manifestDigest: resolved.manifestDigest, config, layers, platform };
  let built;
  try {
    built = await imageToTree(image, { epoch: ctx.epoch, store, progress: ctx.progress, ...(opts.limits ? { limits: opts.limits } : {}) });
  } finally {
    // Nothing partial is left running: downloads not needed any more stop and remove their temporaries.
    abort.abort();
    await Promise.allSettled(downloads.values());
  }
  for (const w of built.warnings) ctx.warn(w);

  if (opts.records !== false) {
    await (opts.records ?? new ImageRecords()).record({
      reference,
      platform: formatPlatform(platform),
      manifestDigest: resolved.manifestDigest,
      digests: [...resolved.manifestDigests, resolved.manifest.config.digest, ...descriptors.map((d) => d.digest), ...diffIds],
      lastUsed: new Date().toISOString(),
    });
  }
  return {
    tree: built.tree,
    agentDefaults: built.agentDefaults,
    report: {
      reference,
      manifestDigest: resolved.manifestDigest,
      ...(resolved.indexDigest ? { indexDigest: resolved.indexDigest } : {}),
      platform: formatPlatform(platform),
      layers: descriptors.length,
      downloadedBytes: client.stats.blobBytes,
      requests: client.stats.requests,
    },
  };
}

/** Per-layer download progress: a line when it starts, at each quarter, and when it is done. */
function layerProgress(ctx: SourceContext, i: number, all: readonly Descriptor[]): (received: number, total: number) => void {
  const d = all[i]!;
  const label = `layer ${i + 1}/${all.length} ${d.digest.slice(0, 19)}`;
  let quarter = -1;
  return (received, total) => {
    const q = total > 0 ? Math.floor((received / total) * 4) : 4;
    if (q === quarter) return;
    quarter = q;
    ctx.progress(q >= 4 ? `${label}: downloaded ${size(total)}` : `${label}: downloading ${size(received)} of ${size(total)} (${q * 25} %)`);
  };
}

function size(bytes: number): string {
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}
