import { createHash, randomBytes } from "node:crypto";
import { createReadStream, type ReadStream } from "node:fs";
import { lstat, mkdir, open, readdir, rename, rm, stat, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { A3sError } from "../../errors.js";
import { cacheRoot } from "../../util/cache-dir.js";
import { DIGEST_ALGORITHMS, parseDigest } from "../digest.js";

/** Temporary files older than this are left by a killed process and may be collected. */
const STALE_TEMP_MS = 6 * 60 * 60 * 1000;

/** A blob that lives in the store. */
export interface StoredBlob {
  readonly digest: string;
  readonly size: number;
  /** Last modification time (ms): when it was stored. */
  readonly mtimeMs: number;
}

export interface PutOptions {
  /** The exact size the blob must have; a byte more stops the write at once. */
  readonly size?: number;
  /** A cap on bytes when the size is not known up front (a decompression bomb stops here). */
  readonly maxBytes?: number;
}

/**
 * Blobs by digest in the user's cache: ROOT/sha256/HEX. A blob is only ever
 * renamed into place after its bytes were hashed and matched, so a path that
 * exists holds verified content; readers never see a partial file.
 */
export class ContentStore {
  readonly root: string;

  constructor(root?: string) {
    this.root = root ?? join(cacheRoot(), "blobs");
  }

  /** Where a verified blob lives (whether or not it is there yet). */
  path(digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return join(this.root, algorithm, hex);
  }

  async has(digest: string, size?: number): Promise<boolean> {
    const st = await stat(this.path(digest)).catch(() => undefined);
    return st !== undefined && st.isFile() && (size === undefined || st.size === size);
  }

  /** The size of a stored blob, or undefined when it is not stored. */
  async size(digest: string): Promise<number | undefined> {
    const st = await stat(this.path(digest)).catch(() => undefined);
    return st?.isFile() ? st.size : undefined;
  }

  /** Reads a stored blob; an error naming the digest when it is not there. */
  open(digest: string): ReadStream {
    return createReadStream(this.path(digest), { highWaterMark: 1 << 20 });
  }

  /**
   * Streams `source` into the store and returns the blob's path. The bytes go
   * to a temporary file in ROOT/tmp (same filesystem, so rename(2) is atomic),
   * hashed as they are written; the file is fsynced, its digest and size
   * checked, and only then renamed into place. Two processes storing the same
   * digest at once each write their own temporary and the second rename
   * replaces identical bytes, so neither ever sees a torn blob.
   */
  async put(
    digest: string,
    source: AsyncIterable<Uint8Array> | Iterable<Uint8Array> | NodeJS.ReadableStream,
    opts: PutOptions = {},
  ): Promise<string> {
    const { algorithm } = parseDigest(digest);
    const finalPath = this.path(digest);
    const limit = opts.size ?? opts.maxBytes ?? Number.POSITIVE_INFINITY;
    const tmpDir = join(this.root, "tmp");
    await mkdir(tmpDir, { recursive: true });
    await mkdir(join(this.root, algorithm), { recursive: true });
    const tmp = join(tmpDir, `${algorithm}-${digest.slice(algorithm.length + 1, algorithm.length + 17)}-${process.pid}-${randomBytes(6).toString("hex")}`);
    const hash = createHash(algorithm);
    let written = 0;
    const file = await open(tmp, "wx", 0o644);
    // Small chunks (16 KiB from zlib, HTTP frames) are gathered into one
    // writev per MiB: a syscall per chunk would dominate a cache-filling pull.
    let pending: Uint8Array[] = [];
    let pendingBytes = 0;
    const flush = async (): Promise<void> => {
      if (pendingBytes === 0) return;
      await writeFully(file, pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
    };
    try {
      try {
        for await (const chunk of source as AsyncIterable<Uint8Array | string>) {
          const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
          written += bytes.byteLength;
          if (written > limit) {
            throw new A3sError(
              "ESIZE",
              opts.size !== undefined
                ? `blob ${digest} is larger than the ${opts.size} bytes its descriptor declares`
                : `blob ${digest} exceeds the limit of ${limit} bytes`,
              { subject: digest, hint: opts.size !== undefined ? "the registry or file served different content" : "raise the size limit if the image is trusted" },
            );
          }
          hash.update(bytes);
          pending.push(bytes);
          pendingBytes += bytes.byteLength;
          if (pendingBytes >= 1 << 20) await flush();
        }
        await flush();
        await file.sync();
      } finally {
        await file.close();
      }
      if (opts.size !== undefined && written !== opts.size) {
        throw new A3sError("ESIZE", `blob ${digest} has ${written} bytes but its descriptor declares ${opts.size}`, {
          subject: digest,
          hint: "the download was cut short or the content is not what the manifest names",
        });
      }
      const actual = `${algorithm}:${hash.digest("hex")}`;
      if (actual !== digest) {
        throw new A3sError("EDIGEST", `digest mismatch: expected ${digest}, got ${actual}`, {
          subject: digest,
          hint: "the content was corrupted or tampered with; nothing was stored",
        });
      }
      await rename(tmp, finalPath);
      await syncDirectory(join(this.root, algorithm));
      return finalPath;
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
  }

  /** Stores bytes already in memory (a manifest, a config). */
  async putBytes(digest: string, data: Uint8Array): Promise<string> {
    return this.put(digest, [data], { size: data.byteLength });
  }

  /** Reads a stored blob whole (for small JSON documents). */
  async readBytes(digest: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const c of this.open(digest)) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  /** Every stored blob. Files whose names are not valid hex digests are ignored (never deleted by gc). */
  async list(): Promise<StoredBlob[]> {
    const out: StoredBlob[] = [];
    for (const algorithm of Object.keys(DIGEST_ALGORITHMS)) {
      const dir = join(this.root, algorithm);
      const names = await readdir(dir).catch(() => [] as string[]);
      for (const hex of names.sort()) {
        const digest = `${algorithm}:${hex}`;
        try {
          parseDigest(digest);
        } catch {
          continue;
        }
        const st = await lstat(join(dir, hex)).catch(() => undefined);
        if (st?.isFile()) out.push({ digest, size: st.size, mtimeMs: st.mtimeMs });
      }
    }
    return out;
  }

  /**
   * Deletes blobs not in `keep`, and temporary files a killed process left
   * behind (old enough that no live build is still writing them).
   */
  async gc(keep: ReadonlySet<string>, now = Date.now()): Promise<{ removed: number; bytes: number }> {
    let removed = 0;
    let bytes = 0;
    for (const blob of await this.list()) {
      if (keep.has(blob.digest)) continue;
      await rm(this.path(blob.digest), { force: true });
      removed++;
      bytes += blob.size;
    }
    const tmpDir = join(this.root, "tmp");
    for (const name of await readdir(tmpDir).catch(() => [] as string[])) {
      const p = join(tmpDir, name);
      const st = await lstat(p).catch(() => undefined);
      if (!st?.isFile() || now - st.mtimeMs < STALE_TEMP_MS) continue;
      await rm(p, { force: true });
      removed++;
      bytes += st.size;
    }
    return { removed, bytes };
  }
}

async function writeFully(file: FileHandle, chunks: Uint8Array[], total: number): Promise<void> {
  let { bytesWritten } = await file.writev(chunks);
  // A short writev (rare: a full disk returns an error instead) continues from where it stopped.
  while (bytesWritten < total) {
    const rest = Buffer.concat(chunks).subarray(bytesWritten);
    const more = await file.write(rest, 0, rest.byteLength);
    bytesWritten += more.bytesWritten;
  }
}

/** fsync a directory so the rename that published a blob survives a crash. */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r").catch(() => undefined);
  if (!handle) return;
  try {
    await handle.sync();
  } catch {
    // Some filesystems refuse fsync on directories; the rename itself is still atomic.
  } finally {
    await handle.close();
  }
}
