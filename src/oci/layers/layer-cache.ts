import { A3sError, isA3sError } from "../../errors.js";
import type { FileIdentity } from "../../util/file-identity.js";
import type { WriteProgress } from "../../util/write-progress.js";
import type { ImageLayer } from "../image.js";
import type { LayerCompression } from "../media-types.js";
import { CORRUPT_BLOB, type ContentStore } from "../store/content-store.js";
import { verifiedBlob } from "../verified-blob.js";
import { decodeLayerFile, decompressLayer, layerFileDecoder } from "./layer-decompress.js";

/** A layer's uncompressed tar, verified, in the content store. */
export interface CachedLayer {
  readonly diffId: string;
  /** The tar in the store; the tree's file contents are ranges of this file. */
  readonly path: string;
  readonly size: number;
  /** The file whose bytes matched the diff_id; every later read of it checks it is still this one. */
  readonly identity: FileIdentity;
  /** How it was stored: decompressed now from this compression, or found in the store from an earlier build. */
  readonly origin: LayerCompression | "cache";
}

export interface CacheLayerOptions {
  readonly maxBytes: number;
  readonly subject: string;
  readonly progress: (message: string) => void;
  /** Where a corrupt cached blob is reported (it is made again, but the user should know the cache went bad). */
  readonly warn: (message: string) => void;
  readonly signal?: AbortSignal;
  /**
   * Called when the layer is being decompressed into the store, with the
   * temporary file and how far it has got, so the caller can parse the tar
   * as it is written (see ContentStore.putVerified's `follow`). Not called
   * for a layer found in the store.
   */
  readonly follow?: (temporary: string, progress: WriteProgress) => void;
}

/**
 * Makes a layer's uncompressed tar available, verified, in the store under
 * its diff_id.
 *
 * Every byte the rootfs takes from the layer is covered by one digest check,
 * made in one streaming pass, and bound to the file it checked:
 * - a hit is hashed (`ContentStore.verify`) while this image's previous
 *   layer is applied: the store is not trusted because a name matches;
 * - a miss streams the blob once: its own digest and size are checked as it
 *   is read, it is decompressed with the bomb cap, and the store hashes the
 *   uncompressed bytes as it writes them and publishes them only if they
 *   match the diff_id the config promised;
 * - either way the result carries the identity (inode, size, times) of the
 *   file that was hashed, and the tree's blob ranges carry it on, so an
 *   output that opens the tar later reads that file or fails.
 *
 * A cached blob that is corrupt (ECACHE: the store removed it) is made again
 * from the layer's source, once per digest, with a warning saying so:
 * a bad uncompressed tar is decompressed again from the blob, and a bad
 * cached blob of a registry image is downloaded again. A source whose own
 * blob is wrong fails with EDIGEST naming the digest and the file.
 */
export async function cacheLayer(layer: ImageLayer, diffId: string, store: ContentStore, opts: CacheLayerOptions): Promise<CachedLayer> {
  const removed = new Set<string>();
  for (;;) {
    try {
      return await storeLayer(layer, diffId, store, opts);
    } catch (e) {
      if (!isA3sError(e, CORRUPT_BLOB) || e.subject === undefined || removed.has(e.subject)) throw e;
      removed.add(e.subject);
      opts.warn(
        e.subject === diffId
          ? `the cached uncompressed layer ${e.subject} was corrupt and was removed; making it again from the layer's blob (${layer.location})`
          : `the cached blob ${e.subject} was corrupt and was removed; fetching it again from ${layer.location}`,
      );
    }
  }
}

async function storeLayer(layer: ImageLayer, diffId: string, store: ContentStore, opts: CacheLayerOptions): Promise<CachedLayer> {
  if (await store.has(diffId)) {
    const hit = await store.verify(diffId, opts.signal ? { signal: opts.signal } : {});
    return { diffId, path: hit.path, size: hit.size, identity: hit.identity, origin: "cache" };
  }
  let origin: LayerCompression = "none";
  try {
    const decoder = await layerFileDecoder(layer, opts.subject);
    if (decoder) {
      origin = "gzip";
      opts.progress(decoder.file.kind === "growing" ? "decompressing (gzip, with igzip) as it downloads" : "decompressing (gzip, with igzip)");
      try {
        const put = await store.putVerifiedWritten(diffId, (fd, signal) => decodeLayerFile(layer, decoder, fd, { maxBytes: opts.maxBytes, subject: opts.subject, signal }), {
          maxBytes: opts.maxBytes,
          durable: false,
          ...(opts.follow ? { follow: opts.follow } : {}),
        });
        const identity = put.identity ?? (await store.verify(diffId)).identity;
        return { diffId, path: put.path, size: put.size, identity, origin };
      } finally {
        // A download's file stays open only while it can be decoded (a put that failed before it began included).
        if (decoder.file.kind === "growing") decoder.file.release();
      }
    }
    const blob = verifiedBlob(await layer.open(), { digest: layer.digest, size: layer.size, location: layer.location }, opts.subject);
    const plain = decompressLayer(blob, layer.mediaType, {
      maxBytes: opts.maxBytes,
      subject: opts.subject,
      onCompression: (c) => {
        origin = c;
        opts.progress(c === "none" ? "storing (uncompressed)" : `decompressing (${c})`);
      },
    });
    // Not fsynced: it can be made again from the blob, and every use hashes it again.
    const put = await store.putVerified(diffId, plain, { maxBytes: opts.maxBytes, durable: false, ...(opts.follow ? { follow: opts.follow } : {}) });
    // Another build published the same tar first: that file was not hashed here.
    const identity = put.identity ?? (await store.verify(diffId)).identity;
    return { diffId, path: put.path, size: put.size, identity, origin };
  } catch (e) {
    throw await explain(e, layer, diffId, opts.subject);
  }
}

/**
 * The real cause of a failed read of a layer. A flipped byte in a gzip
 * stream stops the decoder long before the blob's end, where its digest
 * would have been checked, so a decoding error is followed by a hash of the
 * blob where it is kept (nothing is fetched): when the blob is wrong, that
 * is the error to report (and for a cached copy, ECACHE, which gets it
 * fetched again).
 */
async function explain(e: unknown, layer: ImageLayer, diffId: string, subject: string): Promise<unknown> {
  if (isA3sError(e, "EDIGEST") && e.subject === diffId) {
    return new A3sError("EDIGEST", `${subject}: its uncompressed content does not match the config's diff_id (${e.message})`, {
      subject: diffId,
      hint: "the layer or the image config was altered; nothing was stored",
      cause: e,
    });
  }
  const verdictOnBlob = isA3sError(e) && (e.subject === layer.digest || e.code === CORRUPT_BLOB || e.code === "EABORTED");
  if (verdictOnBlob) return e;
  try {
    await layer.verify();
  } catch (cause) {
    return cause;
  }
  return e;
}
