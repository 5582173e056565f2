import { A3sError } from "../errors.js";
import type { ResolvedImage } from "../oci/image.js";
import type { LayerLimits } from "../oci/layers/layer-limits.js";
import type { LayoutChoice } from "../oci/layout/oci-layout.js";
import type { ContentStore } from "../oci/store/content-store.js";
import type { ImageRecords } from "../oci/store/image-records.js";
import { formatPlatform, hostPlatform, parsePlatform } from "../oci/platform.js";
import type { RootfsSource, SourceContext, SourceResult } from "./source.js";

export interface ImageFileSourceOptions {
  /** "os/arch[/variant]" to pick from an index (default: the host's). */
  readonly platform?: string;
  /** Where uncompressed layers are cached (default: the user's cache). */
  readonly store?: ContentStore;
  /** Where used images are recorded for `cache gc` (default: the user's cache; false: not recorded). */
  readonly records?: ImageRecords | false;
  readonly limits?: LayerLimits;
}

/**
 * `oci:DIR[:REF]`: an image from an OCI image layout on disk (what `skopeo
 * copy … oci:DIR:TAG` and umoci write). REF is a ref name or a digest; the
 * first ":" ends DIR, so DIR itself cannot contain one.
 */
export function ociLayoutSource(rest: string, opts: ImageFileSourceOptions = {}): RootfsSource {
  const colon = rest.indexOf(":");
  const dir = colon < 0 ? rest : rest.slice(0, colon);
  const ref = colon < 0 ? undefined : rest.slice(colon + 1);
  if (dir === "" || ref === "") {
    throw new A3sError("EUSAGE", `invalid source oci:${rest}: expected oci:DIR or oci:DIR:REF`, {
      subject: `oci:${rest}`,
      hint: "e.g. oci:./debian-layout:bookworm or oci:./layout:sha256:…",
    });
  }
  const platform = opts.platform ? parsePlatform(opts.platform) : hostPlatform();
  return {
    spec: `oci:${rest}`,
    providesAgent: true,
    load: async (ctx) => {
      // Loaded here, not at the top: a build from another source never needs the OCI code (CLI start time).
      const { chooseLayoutImage, directoryLayout } = await import("../oci/layout/oci-layout.js");
      return loadImage(await chooseLayoutImage(directoryLayout(dir), ref, { platform, platformChosen: opts.platform !== undefined }), opts, ctx);
    },
    // The manifest's digest pins the config and every layer (each verified when it is read).
    identify: async () => {
      const { chooseLayoutImage, directoryLayout } = await import("../oci/layout/oci-layout.js");
      const { image } = await chooseLayoutImage(directoryLayout(dir), ref, { platform, platformChosen: opts.platform !== undefined });
      return `oci-image ${image.manifestDigest} ${formatPlatform(image.platform)} limits=${JSON.stringify(opts.limits ?? null)}`;
    },
  };
}

/**
 * Applies a chosen image (from a layout or an archive) and reports it: the
 * part every on-disk image source shares. The uncompressed layers it leaves
 * in the store are recorded, so `cache gc` keeps them while the image is in use.
 */
export async function loadImage(
  choice: LayoutChoice,
  opts: ImageFileSourceOptions,
  ctx: SourceContext,
  extraReport: Readonly<Record<string, unknown>> = {},
): Promise<SourceResult> {
  const { image } = choice;
  for (const w of choice.warnings) ctx.warn(w);
  const [{ imageToTree }, { ContentStore }, { ImageRecords }] = await Promise.all([
    import("../oci/layers/image-to-tree.js"),
    import("../oci/store/content-store.js"),
    import("../oci/store/image-records.js"),
  ]);
  const store = opts.store ?? new ContentStore();
  ctx.progress(`applying ${image.reference} (${image.layers.length} layers)`);
  const built = await imageToTree(image, {
    epoch: ctx.epoch,
    store,
    progress: ctx.progress,
    warn: ctx.warn,
    signal: ctx.signal,
    ...(opts.limits ? { limits: opts.limits } : {}),
  });
  if (opts.records !== false) await record(image, opts.records ?? new ImageRecords());
  return {
    tree: built.tree,
    agentDefaults: built.agentDefaults,
    agentWarnings: built.warnings,
    report: {
      reference: image.reference,
      manifestDigest: image.manifestDigest,
      platform: formatPlatform(image.platform),
      layers: image.layers.length,
      ...extraReport,
    },
  };
}

async function record(image: ResolvedImage, records: ImageRecords): Promise<void> {
  await records.record({
    reference: image.reference,
    platform: formatPlatform(image.platform),
    manifestDigest: image.manifestDigest,
    // Only what lives in the store: the layout's own blobs stay where they are.
    digests: [...image.config.rootfs.diff_ids],
    lastUsed: new Date().toISOString(),
  });
}
