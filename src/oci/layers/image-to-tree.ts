import { A3sError } from "../../errors.js";
import type { AgentDefaults } from "../../layout/index.js";
import { DEFAULT_TREE_LIMITS, RootfsTree } from "../../tree/index.js";
import { agentDefaultsFromConfig } from "../image-agent.js";
import type { ImageLayer, ResolvedImage } from "../image.js";
import type { ContentStore } from "../store/content-store.js";
import { GrowingArchiveFile } from "../../formats/archive/index.js";
import type { WriteProgress } from "../../util/write-progress.js";
import { applyLayer, applyScannedLayer, inLayer, scanLayer, type ScannedLayer } from "./layer-apply.js";
import { cacheLayer, type CachedLayer } from "./layer-cache.js";
import { limitError, resolveLayerLimits, type LayerLimits } from "./layer-limits.js";

export interface ImageToTreeContext {
  /** SOURCE_DATE_EPOCH for directories the layers imply but do not list. */
  readonly epoch: number;
  /** Where uncompressed layers are cached by diff_id; the tree's file contents point into them. */
  readonly store: ContentStore;
  readonly progress: (message: string) => void;
  /** What the user must hear about even without progress lines (a corrupt cached blob made again); default: progress. */
  readonly warn?: (message: string) => void;
  readonly limits?: LayerLimits;
  /** Stops between layers (the build was cancelled). */
  readonly signal?: AbortSignal | undefined;
}

/**
 * Applies an image's layers, bottom first, to a fresh tree and derives the
 * agent's defaults from its config.
 *
 * Each layer is first made available uncompressed in the content store under
 * its diff_id (decompressed and hashed in one streaming pass, or found there
 * from an earlier build and hashed again: see cacheLayer), then its tar is
 * applied with OCI whiteout rules. File contents are ranges of those cached
 * tars, bound to the files that were hashed, so memory does not grow with
 * the image, nothing is copied, and no byte reaches an output unverified.
 * Any error stops the whole image: the tree is only returned when every
 * layer applied.
 */
export async function imageToTree(
  image: ResolvedImage,
  ctx: ImageToTreeContext,
): Promise<{ tree: RootfsTree; agentDefaults: AgentDefaults; warnings: string[] }> {
  const limits = resolveLayerLimits(ctx.limits);
  const diffIds = image.config.rootfs.diff_ids;
  if (diffIds.length !== image.layers.length) {
    throw new A3sError(
      "EIMAGE",
      `${image.reference}: the manifest lists ${image.layers.length} layers but the config has ${diffIds.length} diff_ids`,
      { subject: image.manifestDigest, hint: "the image is malformed; rebuild or re-push it" },
    );
  }
  // A trusted image given a larger entry budget gets a tree that can hold it.
  const tree = new RootfsTree({ epoch: ctx.epoch, limits: { maxEntries: Math.max(DEFAULT_TREE_LIMITS.maxEntries, limits.maxEntries) } });
  const labels = image.layers.map((l, i) => `${image.reference} layer ${i + 1}/${image.layers.length} ${shortDigest(l.digest)}`);
  let imageBytes = 0;
  let members = 0;
  const cache = (i: number): Promise<StoredLayer> => {
    const subject = labels[i] as string;
    // The layer's headers are parsed while it is decompressed (the main
    // thread is otherwise idle, waiting for zlib). A corrupt stored copy made
    // again calls follow again; the last scan is the one of the stored file.
    let scan: Promise<ScannedLayer> | undefined;
    const follow = (temporary: string, progress: WriteProgress): void => {
      scan = scanFollowing(new GrowingArchiveFile(temporary, progress, subject), { subject, maxEntries: limits.maxEntries });
      scan.catch(() => undefined);
    };
    const p = cacheLayer(image.layers[i] as ImageLayer, diffIds[i] as string, ctx.store, {
      maxBytes: Math.min(limits.maxLayerBytes, limits.maxImageBytes - imageBytes),
      subject,
      progress: (m) => ctx.progress(`${subject}: ${m}`),
      warn: (m) => (ctx.warn ?? ctx.progress)(`${subject}: ${m}`),
      follow,
    }).then((cached) => ({ cached, scan: cached.origin === "cache" ? undefined : scan }));
    // Awaited later; marked handled now so a failure while the previous layer
    // is still being applied is not an unhandled rejection.
    p.catch(() => undefined);
    return p;
  };
  // The next layer is decompressed (in zlib's thread pool) while this one is
  // applied (on the main thread): the two overlap instead of adding up.
  let next: Promise<StoredLayer> | undefined = image.layers.length > 0 ? cache(0) : undefined;
  try {
    for (let i = 0; i < image.layers.length; i++) {
      ctx.signal?.throwIfAborted();
      const { cached, scan } = await (next as Promise<StoredLayer>);
      next = undefined;
      imageBytes += cached.size;
      if (imageBytes > limits.maxImageBytes) {
        throw limitError("the uncompressed image", "maxImageBytes", limits.maxImageBytes, image.reference);
      }
      if (i + 1 < image.layers.length) next = cache(i + 1);
      const applyOpts = { subject: labels[i] as string, maxEntries: limits.maxEntries - members };
      let applied;
      if (scan) {
        // Scanned against the whole image's budget while this layer's
        // neighbours were still in flight: held to what is left of it now.
        const scanned = await scan;
        if (scanned.members > applyOpts.maxEntries) {
          throw new A3sError("ELIMIT", `${applyOpts.subject} has more than ${applyOpts.maxEntries} members`, {
            subject: applyOpts.subject,
            hint: "raise the entry limit if the archive is trusted",
          });
        }
        applied = await applyScannedLayer(tree, cached, scanned, applyOpts);
      } else {
        applied = await applyLayer(tree, cached, applyOpts);
      }
      members += applied.members;
      ctx.progress(
        `${labels[i]}: applied ${applied.entries} entries` +
          (applied.whiteouts > 0 ? `, ${applied.whiteouts} whiteouts removed ${applied.removed} names` : "") +
          (cached.origin === "cache" ? " (cached)" : ""),
      );
    }
  } finally {
    // A failure stops the build; a decompression still running must finish
    // (its temporary file is removed by the store) rather than be left dangling.
    await next?.catch(() => undefined);
  }
  const { defaults: agentDefaults, warnings } = await agentDefaultsFromConfig(image.config, tree);
  return { tree, agentDefaults, warnings };
}

/** A layer in the store, with the scan of its headers made while it was decompressed (none for one found there). */
interface StoredLayer {
  readonly cached: CachedLayer;
  readonly scan: Promise<ScannedLayer> | undefined;
}

/** scanLayer on the layer as it is written, its file closed when the scan ends. */
async function scanFollowing(source: GrowingArchiveFile, opts: { subject: string; maxEntries: number }): Promise<ScannedLayer> {
  try {
    return await scanLayer(source, opts);
  } catch (e) {
    throw inLayer(e, source.path, opts.subject);
  } finally {
    source.close();
  }
}

function shortDigest(digest: string): string {
  const colon = digest.indexOf(":");
  return digest.slice(0, colon + 13);
}
