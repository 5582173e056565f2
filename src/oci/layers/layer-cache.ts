import { createHash } from "node:crypto";
import { A3sError, isA3sError } from "../../errors.js";
import { parseDigest } from "../digest.js";
import type { ContentStore } from "../store/content-store.js";
import type { ImageLayer } from "../image.js";
import { decompressLayer } from "./layer-decompress.js";
import type { LayerCompression } from "../media-types.js";

/** A layer's uncompressed tar, verified, in the content store. */
export interface CachedLayer {
  readonly diffId: string;
  /** The tar in the store; the tree's file contents are ranges of this file. */
  readonly path: string;
  readonly size: number;
  /** How it was stored: decompressed now from this compression, or found in the store from an earlier build. */
  readonly origin: LayerCompression | "cache";
}

/**
 * Makes a layer's uncompressed tar available in the store under its diff_id.
 *
 * A hit costs one stat: a cached tar was hashed when it was stored, and its
 * name is its hash. On a miss the blob is streamed once: its own digest and
 * size are checked as it is read (a mismatch fails before anything is
 * published), it is decompressed with the bomb cap, and the store hashes the
 * uncompressed bytes as it writes them and publishes them only if they match
 * the diff_id the config promised. A layer whose compressed digest is right
 * but whose content is not what the config says is therefore refused too.
 */
export async function cacheLayer(
  layer: ImageLayer,
  diffId: string,
  store: ContentStore,
  opts: { maxBytes: number; subject: string; progress: (message: string) => void },
): Promise<CachedLayer> {
  const size = await store.size(diffId);
  if (size !== undefined) return { diffId, path: store.path(diffId), size, origin: "cache" };

  let origin: LayerCompression = "none";
  const blob = verifiedBlob(await layer.open(), layer, opts.subject);
  const plain = decompressLayer(blob, layer.mediaType, {
    maxBytes: opts.maxBytes,
    subject: opts.subject,
    onCompression: (c) => {
      origin = c;
      opts.progress(c === "none" ? "storing (uncompressed)" : `decompressing (${c})`);
    },
  });
  try {
    const path = await store.put(diffId, plain, { maxBytes: opts.maxBytes });
    return { diffId, path, size: (await store.size(diffId)) ?? 0, origin };
  } catch (e) {
    if (isA3sError(e, "EDIGEST") && e.subject === diffId) {
      throw new A3sError("EDIGEST", `${opts.subject}: its uncompressed content does not match the config's diff_id (${e.message})`, {
        subject: diffId,
        hint: "the layer or the image config was altered; nothing was stored",
        cause: e,
      });
    }
    throw e;
  }
}

/**
 * The blob's bytes, passed through while their digest and count are checked.
 * A byte past the declared size fails at once (a server that streams forever
 * cannot fill the disk); a short blob or a wrong digest fails at its end,
 * which reaches the store's writer as an error, so nothing is published.
 */
async function* verifiedBlob(stream: NodeJS.ReadableStream, layer: ImageLayer, subject: string): AsyncGenerator<Uint8Array> {
  const { algorithm } = parseDigest(layer.digest);
  const hash = createHash(algorithm);
  let seen = 0;
  for await (const chunk of stream as AsyncIterable<Uint8Array | string>) {
    const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    seen += bytes.byteLength;
    if (seen > layer.size) {
      throw new A3sError("ESIZE", `${subject}: blob is larger than the ${layer.size} bytes its descriptor declares`, {
        subject: layer.digest,
        hint: "the blob is not the one the manifest names",
      });
    }
    hash.update(bytes);
    yield bytes;
  }
  if (seen !== layer.size) {
    throw new A3sError("ESIZE", `${subject}: blob has ${seen} bytes but its descriptor declares ${layer.size}`, {
      subject: layer.digest,
      hint: "the blob was cut short or is not the one the manifest names",
    });
  }
  const actual = `${algorithm}:${hash.digest("hex")}`;
  if (actual !== layer.digest) {
    throw new A3sError("EDIGEST", `${subject}: blob digest mismatch: the manifest says ${layer.digest}, the blob is ${actual}`, {
      subject: layer.digest,
      hint: "the blob was corrupted or tampered with; nothing was stored",
    });
  }
}
