import { createHash, randomBytes } from "node:crypto";
import { fstatSync } from "node:fs";
import { lstat, link, mkdir, open, readdir, rename, rm, stat, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { A3sError, isA3sError } from "../../errors.js";
import { cacheRoot } from "../../util/cache-dir.js";
import { identityDifference, identityOf, sameIdentity, type FileIdentity } from "../../util/file-identity.js";
import { FileLock, removeStaleLock, type LockOptions } from "../../util/file-lock.js";
import { hashFollowingOffThread, type FileHash } from "../../util/off-thread-hash.js";
import { WriteProgress } from "../../util/write-progress.js";
import { DIGEST_ALGORITHMS, parseDigest } from "../digest.js";
import { StoreUses } from "./store-uses.js";

/** Temporary files older than this are left by a killed process and may be collected. */
const STALE_TEMP_MS = 6 * 60 * 60 * 1000;
/** Bytes read at once when a blob is hashed. */
const READ_CHUNK = 1 << 20;
/** Blobs gc locks at once before it looks at what is in use. */
const GC_BATCH = 256;

/** A blob that lives in the store. */
export interface StoredBlob {
  readonly digest: string;
  readonly size: number;
  /** Last modification time (ms): when it was stored. */
  readonly mtimeMs: number;
}

/** A blob whose bytes were hashed and matched, and the identity of the file they were read from. */
export interface VerifiedBlob {
  readonly digest: string;
  readonly path: string;
  readonly size: number;
  /**
   * The file as it was when its bytes were hashed. Whoever reads it later
   * (the tree's blob ranges) compares this with what it opens, so a blob
   * swapped or rewritten after the check is refused, not served.
   */
  readonly identity: FileIdentity;
}

export interface PutOptions {
  /** The exact size the blob must have; a byte more stops the write at once. */
  readonly size?: number;
  /** A cap on bytes when the size is not known up front (a decompression bomb stops here). */
  readonly maxBytes?: number;
  /**
   * Called once the temporary file exists, with how far the write has got:
   * a reader may follow the writer (parse a layer's headers while it is
   * decompressed). It may use what it read only once the put has resolved,
   * that is once the digest matched.
   */
  readonly follow?: (temporary: string, progress: WriteProgress) => void;
  /**
   * false: publish without fsync. For a blob that can be made again from
   * another (an uncompressed layer, from its compressed blob): every use of
   * a stored blob hashes it again, so one cut short by a crash costs a
   * second decompression, never a wrong byte. Default true.
   */
  readonly durable?: boolean;
}

/** What `verifyAll` found. */
export interface StoreCheck {
  readonly checked: number;
  /** Bytes hashed. */
  readonly bytes: number;
  /** Blobs whose bytes do not match their digest (or that changed while they were hashed). */
  readonly bad: readonly { digest: string; path: string; problem: string; removed: boolean }[];
}

export interface VerifyOptions {
  /** Remove a blob that does not match its digest (default true). */
  readonly remove?: boolean;
  readonly signal?: AbortSignal;
}

/**
 * The error code for a stored blob whose bytes do not match its digest (it
 * has been removed unless asked not to); the caller may fetch it again. A
 * file that changed while or after it was verified is ECONTENT instead:
 * something is writing to the cache, and fetching again would not help.
 */
export const CORRUPT_BLOB = "ECACHE";

/** A stored blob whose bytes do not match its digest (code ECACHE). */
export class CorruptBlobError extends A3sError {
  constructor(
    readonly digest: string,
    readonly path: string,
    /** What the bytes hash to. */
    readonly actual: string,
    readonly bytes: number,
    /** Whether the blob was removed from the store. */
    readonly removed: boolean,
  ) {
    super(CORRUPT_BLOB, `the cached blob ${digest} (${path}) is corrupt: its ${bytes} bytes hash to ${actual}${removed ? "; it was removed" : ""}`, {
      subject: digest,
      hint: removed
        ? "it is fetched again from its source when the source still has it; `a3s-rootfs cache verify` checks the whole cache"
        : "`a3s-rootfs cache verify` removes corrupt blobs",
    });
    this.name = "CorruptBlobError";
  }
}

/**
 * Blobs by digest in the user's cache: ROOT/sha256/HEX.
 *
 * Nothing in the store is trusted because of where it is: a disk can flip a
 * bit, a killed tool can truncate a file, another program can write to the
 * cache. So every read hashes what it reads, in the same streaming pass that
 * serves it (`open`, `readBytes`, `verify`), and a blob whose bytes do not
 * match its name is removed and reported with code ECACHE, naming the
 * digest, so the caller can fetch it again from its source. Writing is the
 * mirror image: bytes are hashed as they are written and published (linked
 * into place) only when they match.
 *
 * One store serves every process of a host at once. Publishing by link(2)
 * means nobody ever sees a partial blob; a lock per digest (`fetchLock`)
 * lets the processes that need one missing blob fetch it once; and every
 * blob a process asks about (`has`, `size`) or stores is recorded as used by
 * it (ROOT/uses, see store-uses.ts) until it exits, so `gc` never deletes a
 * blob a running build, run or inspect relies on.
 */
export class ContentStore {
  readonly root: string;
  private readonly uses: StoreUses;

  constructor(root?: string) {
    this.root = root ?? join(cacheRoot(), "blobs");
    this.uses = new StoreUses(join(this.root, "uses"));
  }

  /** Where a verified blob lives (whether or not it is there yet). */
  path(digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return join(this.root, algorithm, hex);
  }

  /**
   * Whether a blob (of that size) is there. It is not read: every read
   * checks it. From this call on, the blob counts as used by this process.
   */
  async has(digest: string, size?: number): Promise<boolean> {
    const path = this.path(digest);
    await this.use(digest);
    const st = await stat(path).catch(() => undefined);
    return st !== undefined && st.isFile() && (size === undefined || st.size === size);
  }

  /** The size of a stored blob, or undefined when it is not stored. Like `has`, it marks the blob used. */
  async size(digest: string): Promise<number | undefined> {
    const path = this.path(digest);
    await this.use(digest);
    const st = await stat(path).catch(() => undefined);
    return st?.isFile() ? st.size : undefined;
  }

  /**
   * Records that this process uses `digest` (once per digest), under the
   * digest's use lock. gc takes the same lock before it looks at the uses
   * and deletes, so either gc sees this use, or it deleted the blob before
   * and the `stat` that follows this call finds it missing.
   */
  private async use(digest: string): Promise<void> {
    if (this.uses.has(digest)) return;
    await FileLock.with(this.lockPath(digest, "use"), () => this.uses.add(digest));
  }

  /**
   * Forgets this object's uses (they end with the process anyway): for a
   * long-lived program that is done with what it built and wants a later gc
   * to be free to collect it.
   */
  async releaseUses(): Promise<void> {
    await this.uses.clear();
  }

  /**
   * The lock a process holds while it fetches (downloads, extracts) a blob
   * into the store, so processes that need the same missing blob fetch it
   * once: the others wait, then find it stored. Release it when done.
   */
  fetchLock(digest: string, opts: LockOptions = {}): Promise<FileLock> {
    return FileLock.acquire(this.lockPath(digest, "fetch"), opts);
  }

  private lockPath(digest: string, kind: "use" | "fetch" | "publish"): string {
    const { algorithm, hex } = parseDigest(digest);
    return join(this.root, "locks", `${algorithm}-${hex}.${kind}`);
  }

  /**
   * A stored blob's bytes, hashed as they stream. The stream ends cleanly
   * only when every byte matched the digest; otherwise the blob is removed
   * and the stream fails with ECACHE, so a consumer never takes a wrong
   * blob's end for a good one.
   */
  open(digest: string, opts: { signal?: AbortSignal } = {}): Readable {
    return Readable.from(this.verifiedChunks(digest, { signal: opts.signal }), { objectMode: false, highWaterMark: READ_CHUNK });
  }

  /**
   * A blob this process has just verified (`putVerified` gave its
   * identity): read without hashing it again, but only from the very file
   * that was hashed, which the identity check makes sure of.
   */
  async openVerified(digest: string, identity: FileIdentity): Promise<Readable> {
    const path = this.path(digest);
    const handle = await open(path, "r");
    try {
      const found = identityOf(await handle.stat({ bigint: true }));
      if (!sameIdentity(found, identity)) {
        throw new A3sError("ECONTENT", `the cached blob ${digest} (${path}) changed after it was verified: ${identityDifference(identity, found)}`, {
          subject: digest,
          hint: "another program is writing to the cache; build again",
        });
      }
    } catch (e) {
      await handle.close();
      throw e;
    }
    return handle.createReadStream({ highWaterMark: READ_CHUNK });
  }

  /**
   * Hashes a stored blob in one streaming pass and returns it with the
   * identity of the file that was hashed. A mismatch removes it (unless
   * `remove` is false) and throws ECACHE.
   */
  async verify(digest: string, opts: VerifyOptions = {}): Promise<VerifiedBlob> {
    let identity: FileIdentity | undefined;
    let size = 0;
    // The chunks are only counted here, so one buffer serves every read.
    for await (const chunk of this.verifiedChunks(digest, { ...opts, onIdentity: (id) => (identity = id), reuse: true })) size += chunk.byteLength;
    return { digest, path: this.path(digest), size, identity: identity as FileIdentity };
  }

  /**
   * Reads a blob through one descriptor, hashing every chunk. The file's
   * identity is taken before the first read and compared after the last:
   * a file that changed while it was hashed is not the one that matched.
   */
  private async *verifiedChunks(
    digest: string,
    /**
     * `reuse`: every read goes into the same buffer, for a consumer that is
     * done with a chunk when it asks for the next. A new 1 MiB buffer per
     * read is fresh memory to fault in, and garbage: a build whose 170 MB
     * layer came from the store took 15 % longer that way
     * (bench/results/core-speed-notes.md).
     */
    opts: VerifyOptions & { onIdentity?: (identity: FileIdentity) => void; reuse?: boolean },
  ): AsyncGenerator<Buffer> {
    const { algorithm } = parseDigest(digest);
    const path = this.path(digest);
    const handle = await open(path, "r").catch((e: NodeJS.ErrnoException) => {
      throw new A3sError(e.code === "ENOENT" ? "ENOENT" : "ECONTENT", `the cached blob ${digest} cannot be read: ${e.message}`, { subject: digest, cause: e });
    });
    try {
      let st = await handle.stat({ bigint: true });
      if (st.nlink > 1n) {
        // Another process has just linked it into place and is about to
        // unlink its temporary name, which changes the inode's ctime: the
        // identity is taken once it has (the publish lock, held only for
        // the link and the unlink).
        await FileLock.with(this.lockPath(digest, "publish"), async () => undefined, opts.signal ? { signal: opts.signal } : {});
        st = await handle.stat({ bigint: true });
      }
      const before = identityOf(st);
      const hash = createHash(algorithm);
      const shared = opts.reuse ? Buffer.allocUnsafe(READ_CHUNK) : undefined;
      let position = 0;
      for (;;) {
        if (opts.signal?.aborted) throw aborted(digest);
        const buf = shared ?? Buffer.allocUnsafe(READ_CHUNK);
        const { bytesRead } = await handle.read(buf, 0, READ_CHUNK, position);
        if (bytesRead === 0) break;
        const chunk = buf.subarray(0, bytesRead);
        hash.update(chunk);
        position += bytesRead;
        // The last chunk is held back until the digest is known: a consumer
        // must not see the end of a blob that turns out to be wrong.
        if (position < before.size) yield chunk;
        else {
          await this.finish(digest, handle, before, hash.digest("hex"), position, opts);
          opts.onIdentity?.(before);
          if (chunk.byteLength > 0) yield chunk;
          return;
        }
      }
      await this.finish(digest, handle, before, hash.digest("hex"), position, opts);
      opts.onIdentity?.(before);
    } finally {
      await handle.close();
    }
  }

  /** The end of a hashing read: the same file, the same size, the right digest, or the blob goes. */
  private async finish(digest: string, handle: FileHandle, before: FileIdentity, hex: string, read: number, opts: VerifyOptions): Promise<void> {
    const { algorithm } = parseDigest(digest);
    const after = identityOf(await handle.stat({ bigint: true }));
    const path = this.path(digest);
    if (!sameIdentity(before, after) || read !== before.size) {
      throw new A3sError("ECONTENT", `the cached blob ${digest} (${path}) changed while it was being verified`, {
        subject: digest,
        hint: "another program is writing to the cache; build again",
      });
    }
    const actual = `${algorithm}:${hex}`;
    if (actual === digest) return;
    const removed = opts.remove !== false && (await this.discard(digest, before));
    throw new CorruptBlobError(digest, path, actual, read, removed);
  }

  /**
   * Removes a blob, but only the file `identity` names: another process may
   * have removed the bad copy already and stored a good one in its place.
   */
  private async discard(digest: string, identity: FileIdentity): Promise<boolean> {
    const path = this.path(digest);
    const now = await stat(path, { bigint: true }).catch(() => undefined);
    if (!now || now.ino !== identity.ino || now.dev !== identity.dev) return false;
    await rm(path, { force: true });
    return true;
  }

  /**
   * Streams `source` into the store and returns the blob's path. The bytes go
   * to a temporary file in ROOT/tmp (same filesystem, so publishing is
   * atomic), hashed as they are written; the file is fsynced (unless
   * `durable` is false), its digest and size checked, and only then linked
   * into place.
   */
  async put(
    digest: string,
    source: AsyncIterable<Uint8Array> | Iterable<Uint8Array> | NodeJS.ReadableStream,
    opts: PutOptions = {},
  ): Promise<string> {
    return (await this.putVerified(digest, source, opts)).path;
  }

  /**
   * `put`, returning the blob with the identity of the file just written,
   * or undefined as its identity when another process published the same
   * digest first (that file was not hashed here; `verify` it before use).
   *
   * A published blob is never replaced: two processes storing one digest
   * at once each write their own temporary, and link(2) publishes the first
   * while the second finds it there and drops its own. Replacing it (as a
   * rename would) would pull the file from under a build that verified the
   * first copy and holds its identity.
   */
  async putVerified(
    digest: string,
    source: AsyncIterable<Uint8Array> | Iterable<Uint8Array> | NodeJS.ReadableStream,
    opts: PutOptions = {},
  ): Promise<{ path: string; size: number; identity: FileIdentity | undefined }> {
    return this.putFilled(digest, opts, async (file, take, progress) => {
      // Small chunks (16 KiB from zlib, HTTP frames) are gathered into one
      // writev per MiB: a syscall per chunk would dominate a cache-filling pull.
      let pending: Uint8Array[] = [];
      let pendingBytes = 0;
      const flush = async (): Promise<void> => {
        if (pendingBytes === 0) return;
        await writeFully(file, pending, pendingBytes);
        progress?.advance(pendingBytes);
        pending = [];
        pendingBytes = 0;
      };
      for await (const chunk of source as AsyncIterable<Uint8Array | string>) {
        const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
        take(bytes);
        pending.push(bytes);
        pendingBytes += bytes.byteLength;
        if (pendingBytes >= 1 << 20) await flush();
      }
      await flush();
    });
  }

  /**
   * `putVerified` for bytes another process writes: `writer` is given the
   * temporary file's descriptor (its stdout, say) and resolves once the
   * writer is done. The bytes are hashed on a worker thread as they land
   * (off-thread-hash.ts), read back from the page cache, and a follower
   * sees them as they land. On any failure `writer`'s signal is aborted (it
   * must stop writing), and the writer's own error is the one reported.
   * `maxBytes` is checked here too, but the writer must keep to it itself:
   * nothing here can stop a write.
   */
  async putVerifiedWritten(
    digest: string,
    writer: (fd: number, signal: AbortSignal) => Promise<void>,
    opts: PutOptions = {},
  ): Promise<{ path: string; size: number; identity: FileIdentity | undefined }> {
    const limit = opts.size ?? opts.maxBytes ?? Number.POSITIVE_INFINITY;
    return this.putFilled(digest, opts, async (file, _take, progress, tmp) => {
      const stop = new AbortController();
      let finished = false;
      let failure: unknown;
      const writing = writer(file.fd, stop.signal).then(
        () => void (finished = true),
        (e: unknown) => {
          finished = true;
          failure = e ?? new Error("the writer failed");
        },
      );
      const hashing = hashFollowingOffThread(tmp, parseDigest(digest).algorithm);
      let seen = 0;
      try {
        for (;;) {
          // Asked before the size: bytes written before the writer finished are in the file by then.
          const done = finished;
          const size = fstatSync(file.fd).size;
          if (size > limit) throw new A3sError("ESIZE", `blob ${digest} exceeds the limit of ${limit} bytes`, { subject: digest });
          if (size > seen) {
            progress?.advance(size - seen);
            seen = size;
          }
          if (done) break;
          await Promise.race([writing, new Promise((resolve) => setTimeout(resolve, 1))]);
        }
        if (failure !== undefined) throw failure;
      } catch (e) {
        stop.abort(e);
        await writing;
        await hashing.stop();
        throw failure ?? e;
      }
      return hashing.finish(seen);
    });
  }

  /**
   * The body of every put: a temporary file in ROOT/tmp (same filesystem,
   * so publishing is atomic) that `fill` fills, passing every byte to
   * `take` (size limit and hash) as it goes; then fsync (unless `durable`
   * is false), the size and digest checks, and the link into place.
   */
  private async putFilled(
    digest: string,
    opts: PutOptions,
    fill: (file: FileHandle, take: (bytes: Uint8Array) => void, progress: WriteProgress | undefined, tmp: string) => Promise<FileHash | void>,
  ): Promise<{ path: string; size: number; identity: FileIdentity | undefined }> {
    const { algorithm } = parseDigest(digest);
    const finalPath = this.path(digest);
    // What this process stores it is about to use.
    await this.use(digest);
    const limit = opts.size ?? opts.maxBytes ?? Number.POSITIVE_INFINITY;
    const tmpDir = join(this.root, "tmp");
    await mkdir(tmpDir, { recursive: true });
    await mkdir(join(this.root, algorithm), { recursive: true });
    const tmp = join(tmpDir, `${algorithm}-${digest.slice(algorithm.length + 1, algorithm.length + 17)}-${process.pid}-${randomBytes(6).toString("hex")}`);
    const hash = createHash(algorithm);
    let written = 0;
    const take = (bytes: Uint8Array): void => {
      written += bytes.byteLength;
      if (written > limit) {
        throw new A3sError(
          "ESIZE",
          opts.size !== undefined ? `blob ${digest} is larger than the ${opts.size} bytes its descriptor declares` : `blob ${digest} exceeds the limit of ${limit} bytes`,
          { subject: digest, hint: opts.size !== undefined ? "the registry or file served different content" : "raise the size limit if the image is trusted" },
        );
      }
      hash.update(bytes);
    };
    // Read as well as write: a writer in another process is followed by reading the file back.
    const file = await open(tmp, "wx+", 0o644);
    const progress = opts.follow ? new WriteProgress() : undefined;
    try {
      try {
        if (progress) opts.follow?.(tmp, progress);
        // A fill that hashed the bytes elsewhere says what it found.
        const hashedElsewhere = await fill(file, take, progress, tmp);
        if (hashedElsewhere) written = hashedElsewhere.bytes;
        progress?.finish();
        if (opts.durable !== false) await file.sync();
        if (opts.size !== undefined && written !== opts.size) {
          throw new A3sError("ESIZE", `blob ${digest} has ${written} bytes but its descriptor declares ${opts.size}`, {
            subject: digest,
            hint: "the download was cut short or the content is not what the manifest names",
          });
        }
        const actual = `${algorithm}:${hashedElsewhere ? hashedElsewhere.hex : hash.digest("hex")}`;
        if (actual !== digest) {
          throw new A3sError("EDIGEST", `digest mismatch: expected ${digest}, got ${actual}`, {
            subject: digest,
            hint: "the content was corrupted or tampered with; nothing was stored",
          });
        }
        // Under the digest's publish lock: a reader that finds the blob while
        // it still has two names waits for the unlink (see verifiedChunks).
        const placed = await FileLock.with(this.lockPath(digest, "publish"), async () => {
          const done = await publish(tmp, finalPath);
          await rm(tmp, { force: true });
          return done;
        });
        if (opts.durable !== false) await syncDirectory(join(this.root, algorithm));
        // Taken after the link and the unlink, which both change the inode's ctime.
        const identity = placed ? identityOf(await file.stat({ bigint: true })) : undefined;
        return { path: finalPath, size: written, identity };
      } finally {
        await file.close();
      }
    } catch (e) {
      progress?.fail(e);
      await rm(tmp, { force: true });
      throw e;
    }
  }

  /** Stores bytes already in memory (a manifest, a config). */
  async putBytes(digest: string, data: Uint8Array): Promise<string> {
    return this.put(digest, [data], { size: data.byteLength });
  }

  /** Reads a stored blob whole (for small JSON documents), verified like every read. */
  async readBytes(digest: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const c of this.verifiedChunks(digest, {})) chunks.push(c);
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
   * Hashes every blob in the store (`cache verify`), one at a time, and
   * removes each that does not match its digest unless `remove` is false.
   * A blob that disappears meanwhile (a concurrent gc) is skipped.
   */
  async verifyAll(opts: VerifyOptions & { onBlob?: (digest: string, problem: string | undefined) => void } = {}): Promise<StoreCheck> {
    const bad: StoreCheck["bad"][number][] = [];
    let checked = 0;
    let bytes = 0;
    for (const blob of await this.list()) {
      try {
        const v = await this.verify(blob.digest, opts);
        checked++;
        bytes += v.size;
        opts.onBlob?.(blob.digest, undefined);
      } catch (e) {
        if (isA3sError(e, "ENOENT")) continue;
        if (!(e instanceof CorruptBlobError) && !isA3sError(e, "ECONTENT")) throw e;
        checked++;
        bytes += blob.size;
        bad.push({ digest: blob.digest, path: this.path(blob.digest), problem: e.message, removed: e instanceof CorruptBlobError && e.removed });
        opts.onBlob?.(blob.digest, e.message);
      }
    }
    return { checked, bytes, bad };
  }

  /**
   * Deletes blobs not in `keep` and not used by a running process, and
   * temporary files a killed process left behind (old enough that no live
   * build is still writing them), and locks whose owner is gone.
   *
   * A blob is deleted only while gc holds its use lock and after it has read
   * every process's uses under that lock: a process that recorded its use
   * before is seen, and one that records it after finds the blob gone (and
   * fetches it again).
   */
  async gc(keep: ReadonlySet<string>, now = Date.now()): Promise<{ removed: number; bytes: number; inUse: number }> {
    let removed = 0;
    let bytes = 0;
    let inUse = 0;
    const candidates = (await this.list()).filter((b) => !keep.has(b.digest));
    for (let i = 0; i < candidates.length; i += GC_BATCH) {
      const batch = candidates.slice(i, i + GC_BATCH);
      const locks: FileLock[] = [];
      try {
        // In digest order, so two gcs at once cannot wait on each other.
        for (const blob of batch) locks.push(await FileLock.acquire(this.lockPath(blob.digest, "use")));
        const used = await this.uses.inUse();
        for (const blob of batch) {
          if (used.has(blob.digest)) {
            inUse++;
            continue;
          }
          await rm(this.path(blob.digest), { force: true });
          removed++;
          bytes += blob.size;
        }
      } finally {
        for (const lock of locks) await lock.release();
      }
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
    await this.removeStaleLocks();
    return { removed, bytes, inUse };
  }

  /** Lock files whose owner is no longer running (the next user would break them anyway). */
  private async removeStaleLocks(): Promise<void> {
    const dir = join(this.root, "locks");
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (/^sha(256|512)-[0-9a-f]+\.(use|fetch|publish)$/.test(name)) await removeStaleLock(join(dir, name));
    }
  }
}

/**
 * Links a verified temporary into place unless the digest is there already;
 * true when this call placed it. A filesystem without hard links falls back
 * to rename(2), which replaces identical bytes.
 */
async function publish(tmp: string, finalPath: string): Promise<boolean> {
  try {
    await link(tmp, finalPath);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST") return false;
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "ENOSYS") throw e;
    await rename(tmp, finalPath);
    return true;
  }
}

function aborted(digest: string): A3sError {
  return new A3sError("EABORTED", `stopped while verifying ${digest}`, { subject: digest });
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
