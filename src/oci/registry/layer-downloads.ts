import { closeSync, openSync } from "node:fs";
import { PassThrough } from "node:stream";
import type { LayerBlobFile } from "../image.js";
import type { Descriptor } from "../manifest.js";
import type { ImageReference } from "../reference.js";
import type { FileIdentity } from "../../util/file-identity.js";
import type { WriteProgress } from "../../util/write-progress.js";
import type { FetchBlobOptions, RegistryClient } from "./client.js";

/**
 * The download scheduler of one image pull. The layers are applied in
 * order, bottom first; meanwhile every layer whose blob is missing from the
 * store downloads in the background, a few at a time (the client's
 * concurrency). The first missing layer does not wait for its download to
 * finish: its bytes stream into the applier as they arrive, so applying
 * starts with the first bytes of the image instead of after the whole of it.
 * A layer whose uncompressed tar is cached already is not downloaded at all.
 */
export class LayerDownloads {
  /** Stops every download when the pull ends, whatever state it is in. */
  private readonly abort = new AbortController();
  private readonly downloads = new Map<number, Promise<{ path: string; identity: FileIdentity | undefined }>>();

  constructor(
    private readonly client: RegistryClient,
    private readonly ref: ImageReference,
    private readonly descriptors: readonly Descriptor[],
    private readonly progress: (message: string) => void,
    cancel?: AbortSignal,
  ) {
    if (cancel?.aborted) this.abort.abort();
    else cancel?.addEventListener("abort", () => this.abort.abort(), { once: true });
  }

  /**
   * Finds the layers that need their blob (neither the uncompressed tar,
   * by diff_id, nor the blob itself is in the store) and starts downloading
   * all but the first: that one streams when it is opened.
   */
  async start(diffIds: readonly string[]): Promise<void> {
    const store = this.client.store;
    const needed: number[] = [];
    for (const [i, d] of this.descriptors.entries()) {
      const diffId = diffIds[i];
      const cached = diffId !== undefined && (await store.has(diffId));
      if (!cached && !(await store.has(d.digest, d.size))) needed.push(i);
    }
    for (const i of needed.slice(1)) this.prefetch(i);
  }

  /**
   * Layer i's blob: from the store once its download is done, or streamed
   * as it downloads. A blob read from the store is hashed as it is read
   * (ContentStore.open), so a copy corrupted on disk fails with ECACHE and
   * is removed; the next open of the layer then downloads it again.
   */
  async open(i: number): Promise<NodeJS.ReadableStream> {
    const d = this.descriptors[i]!;
    const pending = this.downloads.get(i);
    if (pending) {
      this.downloads.delete(i);
      const { identity } = await pending;
      // Stored by this pull: hashed as it was written, read back unhashed from that very file.
      if (identity) return this.client.store.openVerified(d.digest, identity);
    } else if (!(await this.client.store.has(d.digest, d.size))) return this.stream(i);
    return this.client.store.open(d.digest);
  }

  /**
   * Layer i's blob as a file, for a decoder in another process
   * (ImageLayer.file): a download of this pull, once stored, as the very
   * file it hashed ("verified"); a blob the store had before, hashed now
   * as every read of the store is (a corrupt copy fails with ECACHE and is
   * removed); a blob still missing, as its download into the store
   * ("growing"), started now if it was not started, the decoder reading
   * the bytes as they land. A download another process makes instead
   * comes back as the stored file once it is done.
   */
  async file(i: number): Promise<LayerBlobFile> {
    const d = this.descriptors[i]!;
    const pending = this.downloads.get(i);
    if (pending) {
      this.downloads.delete(i);
      return this.storedFile(d, await pending);
    }
    if (await this.client.store.has(d.digest, d.size)) return this.storedFile(d, undefined);
    return this.growing(i);
  }

  /** The store's copy of a blob: verified as written by this pull, or hashed now. */
  private async storedFile(d: Descriptor, fetched: { path: string; identity: FileIdentity | undefined } | undefined): Promise<LayerBlobFile> {
    if (fetched?.identity) return { kind: "verified", path: fetched.path, identity: fetched.identity };
    const v = await this.client.store.verify(d.digest, { signal: this.abort.signal });
    return { kind: "verified", path: v.path, identity: v.identity };
  }

  /**
   * Starts layer i's download and gives its temporary file as it grows,
   * held open from the moment the store makes it (its name goes when it is
   * published); the download stays this pull's, so `open` can still read it
   * from the store should the decoder decline it.
   */
  private growing(i: number): Promise<LayerBlobFile> {
    const d = this.descriptors[i]!;
    return new Promise((resolve, reject) => {
      let fd: number | undefined;
      const follow = (temporary: string, progress: WriteProgress): void => {
        fd = openSync(temporary, "r");
        const held = fd;
        let released = false;
        resolve({
          kind: "growing",
          path: `/proc/self/fd/${held}`,
          progress,
          stored: download,
          release: () => {
            if (!released) closeSync(held);
            released = true;
          },
        });
      };
      const download = this.client.fetchBlobVerified(this.ref, d, { ...this.fetchOptions(i, this.abort.signal), follow });
      this.downloads.set(i, download);
      download.then(
        (fetched) => {
          if (fd !== undefined) return;
          // Stored by another process meanwhile: nothing grew here.
          this.downloads.delete(i);
          this.storedFile(d, fetched).then(resolve, reject);
        },
        (e: unknown) => {
          if (fd === undefined) reject(e);
        },
      );
    });
  }

  /**
   * Hashes layer i's blob if the store has it (see ImageLayer.verify);
   * nothing is downloaded. A download of it still running is waited for
   * first: its own digest check is the verdict on the bytes a decoder
   * following it failed on (a flipped byte stops igzip before the end).
   */
  async verifyStored(i: number): Promise<void> {
    const d = this.descriptors[i]!;
    await this.downloads.get(i);
    if (await this.client.store.has(d.digest)) await this.client.store.verify(d.digest);
  }

  /** Nothing partial is left running: downloads not needed any more stop and remove their temporaries. */
  async close(): Promise<void> {
    this.abort.abort();
    await Promise.allSettled(this.downloads.values());
  }

  private prefetch(i: number): void {
    if (this.downloads.has(i)) return;
    const p = this.client.fetchBlobVerified(this.ref, this.descriptors[i]!, this.fetchOptions(i, this.abort.signal));
    // Failures surface when the layer is opened; this only keeps an early
    // failure of a later layer from being reported as unhandled.
    p.catch(() => {});
    this.downloads.set(i, p);
  }

  /**
   * Layer i's bytes as they download. The stream ends only once the store
   * has verified the whole blob; a bad digest reaches the reader as an
   * error, never as a clean end.
   */
  private stream(i: number): NodeJS.ReadableStream {
    const d = this.descriptors[i]!;
    // Byte mode on purpose: its reader gets the chunks waiting joined into
    // one Buffer per read (up to 1 MiB), a copy that cost the main thread
    // ~155 ms for the Debian minbase's 60 MiB layer from a registry on
    // loopback (CPU profile), but the decompressor then takes 1 MiB pieces.
    // Passed through as they came (object mode, 16 chunks of ~64 KiB), the
    // build to erofs took 3.37-3.80 s against 3.03-3.14 s, 4 alternated
    // pairs: zlib's per-call cost on 16 times as many calls outweighed the
    // copy. (Feeding the download to igzip on its standard input instead of
    // zlib was slower too, 3.82-4.14 s against 3.32-3.67 s: the main thread,
    // which parses HTTP and hashes, bounds the download, and the writes
    // into the pipe added to its work.)
    const out = new PassThrough({ highWaterMark: 1 << 20 });
    const mine = new AbortController();
    this.abort.signal.addEventListener("abort", () => mine.abort(), { once: true });
    // A consumer that stops reading (an error in the layer) must not leave the download waiting on it.
    out.once("close", () => {
      if (!out.writableFinished) mine.abort();
    });
    let fed = 0;
    const feed = async (b: Buffer): Promise<void> => {
      fed += b.length;
      if (out.destroyed || out.write(b)) return;
      await drained(out);
    };
    const p = this.client.fetchBlobVerified(this.ref, d, this.fetchOptions(i, mine.signal, feed));
    p.then(
      () => {
        if (fed > 0 || d.size === 0) return out.end();
        // Another build stored the blob first, so nothing came through us: read it from the store.
        const stored = this.client.store.open(d.digest);
        stored.once("error", (e) => out.destroy(e));
        stored.pipe(out);
      },
      (e: unknown) => out.destroy(e as Error),
    );
    this.downloads.set(i, p);
    return out;
  }

  private fetchOptions(i: number, signal: AbortSignal, onChunk?: (b: Buffer) => Promise<void>): FetchBlobOptions {
    return { onProgress: layerProgress(this.progress, i, this.descriptors), signal, ...(onChunk ? { onChunk } : {}) };
  }
}

/** Resolves when `out` can take more, or is closed. */
function drained(out: PassThrough): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      out.off("drain", done);
      out.off("close", done);
      resolve();
    };
    out.on("drain", done);
    out.on("close", done);
  });
}

/** Per-layer download progress: a line when it starts, at each quarter, and when it is done. */
function layerProgress(progress: (message: string) => void, i: number, all: readonly Descriptor[]): (received: number, total: number) => void {
  const d = all[i]!;
  const label = `layer ${i + 1}/${all.length} ${d.digest.slice(0, 19)}`;
  let quarter = -1;
  return (received, total) => {
    const q = total > 0 ? Math.floor((received / total) * 4) : 4;
    if (q === quarter) return;
    quarter = q;
    progress(q >= 4 ? `${label}: downloaded ${size(total)}` : `${label}: downloading ${size(received)} of ${size(total)} (${q * 25} %)`);
  };
}

function size(bytes: number): string {
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}
