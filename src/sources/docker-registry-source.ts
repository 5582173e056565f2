import { A3sError } from "../errors.js";
import type { LayerLimits } from "../oci/layers/layer-limits.js";
import { formatPlatform, hostPlatform, parsePlatform, type Platform } from "../oci/platform.js";
import { parseReference, type ImageReference } from "../oci/reference.js";
import type { RegistryClient } from "../oci/registry/client.js";
import { parseCredsFlag, type RegistryCredentials } from "../oci/registry/credentials.js";
import type { RetryPolicy } from "../oci/registry/retry.js";
import type { ContentStore } from "../oci/store/content-store.js";
import type { ImageRecords } from "../oci/store/image-records.js";
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
 * resolved and the layers downloaded into the content store as they are
 * applied (oci/registry/remote-image.ts schedules the downloads), then the
 * image is recorded for `cache gc`.
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
  ref: ImageReference,
  wanted: Platform,
  platformChosen: boolean,
  credentials: RegistryCredentials | undefined,
  opts: DockerRegistrySourceOptions,
  ctx: SourceContext,
): Promise<SourceResult> {
  // Loaded here, not at the top: a build from another source never needs the registry code (CLI start time).
  const [{ imageToTree }, { RegistryClient }, { openRemoteImage }, { ContentStore }, { ImageRecords }] = await Promise.all([
    import("../oci/layers/image-to-tree.js"),
    import("../oci/registry/client.js"),
    import("../oci/registry/remote-image.js"),
    import("../oci/store/content-store.js"),
    import("../oci/store/image-records.js"),
  ]);
  const store = opts.store ?? new ContentStore();
  const client = new RegistryClient({
    store,
    warn: ctx.warn,
    ...(credentials ? { credentials } : {}),
    ...(opts.insecure !== undefined ? { insecure: opts.insecure } : {}),
    ...(opts.retry ? { retry: opts.retry } : {}),
    ...(opts.concurrency !== undefined ? { concurrency: opts.concurrency } : {}),
  });
  opts.onClient?.(client);
  const remote = await openRemoteImage(client, ref, wanted, { platformChosen, warn: ctx.warn, progress: ctx.progress, signal: ctx.signal });
  const { image, resolved } = remote;
  let built;
  try {
    built = await imageToTree(image, { epoch: ctx.epoch, store, progress: ctx.progress, warn: ctx.warn, signal: ctx.signal, ...(opts.limits ? { limits: opts.limits } : {}) });
  } finally {
    await remote.close();
  }
  if (opts.records !== false) {
    const layers = resolved.manifest.layers.map((d) => d.digest);
    await (opts.records ?? new ImageRecords()).record({
      reference: image.reference,
      platform: formatPlatform(image.platform),
      manifestDigest: resolved.manifestDigest,
      digests: [...resolved.manifestDigests, resolved.manifest.config.digest, ...layers, ...image.config.rootfs.diff_ids],
      lastUsed: new Date().toISOString(),
    });
  }
  return {
    tree: built.tree,
    agentDefaults: built.agentDefaults,
    agentWarnings: built.warnings,
    report: {
      reference: image.reference,
      manifestDigest: resolved.manifestDigest,
      ...(resolved.indexDigest ? { indexDigest: resolved.indexDigest } : {}),
      platform: formatPlatform(image.platform),
      layers: image.layers.length,
      downloadedBytes: client.stats.blobBytes,
      requests: client.stats.requests,
    },
  };
}
