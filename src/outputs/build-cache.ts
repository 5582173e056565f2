import type { Stats } from "node:fs";
import { lstat, mkdir, mkdtemp, open, readdir, readFile, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { VerityInfo } from "../formats/verity/index.js";
import { renderVeritySidecar, veritySidecarPath } from "../formats/verity/sidecar.js";
import { cacheRoot } from "../util/cache-dir.js";
import { identityOf, identityText, sameIdentity, type FileIdentity } from "../util/file-identity.js";
import { fileSha256 } from "../util/file-sha256.js";
import { writeFileAtomic } from "../util/write-file-atomic.js";
import { temporaryPathFor, writeAtomically } from "./atomic.js";
import { hashedCopy } from "./hashed-copy.js";
import type { OutputFormat, OutputResult } from "./output.js";
import { removeStaleVerityRecord, VERITY_FORMATS } from "./verity-output.js";

/**
 * The build cache: finished file outputs (tar, cpio, ext4, erofs, squashfs),
 * content-addressed by everything they are made from (the builder computes
 * the key: source digest, agent and init hashes, layout and guest config,
 * added files, format and its options, verity, epoch, tool versions and
 * the a3s-rootfs version). Those outputs are reproducible, so a build with
 * the same key would write the same bytes: a repeated build copies them
 * instead of building.
 *
 *   CACHE/builds/KEY/
 *     output        the file, exactly as the build published it
 *     entry.json    its SHA-256 and size, the build's report, last use
 *     published     where it was last published, and that file's identity
 *
 * Trust: every byte read from here is verified. The published copy is
 * hashed after it is made and compared with the SHA-256 recorded when the
 * entry was stored; a mismatch discards the entry and the build goes on as
 * a miss, so a corrupted entry costs one rebuild, never a bad output. The
 * published output is a copy (a reflink where the filesystem has them;
 * hashed-copy.ts), never a hard link: the user owns it and may write to it, and a write
 * through a hard link would change the cached bytes for every later build.
 * An output path that already holds the entry's bytes, as a file of its
 * own, is hashed the same way and kept (keptInPlace), or kept unread when
 * it is the very file the entry last published there, unchanged since
 * (unchangedSincePublished).
 *
 * Bounded: after each store, entries are removed least recently used first
 * until the cache is under its cap; `cache gc` does the same on demand.
 */

/** The default cap on the build cache: a few dozen agent images. */
export const DEFAULT_BUILD_CACHE_BYTES = 2 * 1024 ** 3;
const ENTRY = "entry.json";
const OUTPUT = "output";
/** Where the entry's output was last published, and that file's identity then (see unchangedSincePublished). */
const PUBLISHED = "published";

/** What an entry records besides its bytes. */
export interface BuildCacheEntry {
  readonly format: 1;
  readonly key: string;
  readonly outputFormat: OutputFormat;
  readonly sha256: string;
  readonly bytes: number;
  /** The dm-verity record of the image, without the path it was published at. */
  readonly verity?: Omit<VerityInfo, "hashPath">;
  /** What the build reported that a cache hit cannot recompute: the tree's entry count, the source's report. */
  readonly entries: number;
  readonly sourceReport?: Readonly<Record<string, unknown>>;
  readonly createdAt: string;
}

export interface CachedBuild {
  readonly dir: string;
  readonly entry: BuildCacheEntry;
  /** Last use (the entry file's mtime), for LRU. */
  readonly lastUsedMs: number;
}

export class BuildCache {
  constructor(
    readonly root: string = join(cacheRoot(), "builds"),
    readonly maxBytes: number = DEFAULT_BUILD_CACHE_BYTES,
  ) {}

  /** The entry for `key`, or undefined; an unreadable entry counts as none (and is removed). */
  async lookup(key: string): Promise<CachedBuild | undefined> {
    const dir = join(this.root, key);
    const raw = await readFile(join(dir, ENTRY), "utf8").catch(() => undefined);
    if (raw === undefined) return undefined;
    let entry: BuildCacheEntry;
    try {
      entry = JSON.parse(raw) as BuildCacheEntry;
    } catch {
      await this.discard(key);
      return undefined;
    }
    if (entry.format !== 1 || entry.key !== key || !/^[0-9a-f]{64}$/.test(entry.sha256)) {
      await this.discard(key);
      return undefined;
    }
    return { dir, entry, lastUsedMs: (await stat(join(dir, ENTRY))).mtimeMs };
  }

  /**
   * Publishes a cached output at `final` (atomically, like a built one),
   * its verity record beside it. The copy is hashed and checked against the
   * recorded SHA-256 before it is published; on a mismatch nothing is
   * published, the entry is discarded, and the result is undefined: the
   * caller builds instead. Returns the output's result otherwise.
   */
  async publish(hit: CachedBuild, final: string, opts: { signal?: AbortSignal | undefined; beforePublish?: () => Promise<void> } = {}): Promise<OutputResult | undefined> {
    const { entry } = hit;
    const there = await lstat(final).catch(() => undefined);
    if (there?.isFile() && (await this.keptInPlace(hit, final, there, opts))) return this.publishedResult(hit, final);
    const replacing = there !== undefined;
    let intact = true;
    await writeAtomically(
      final,
      async (tmp) => {
        // A reflink where the filesystem can, else a copy: never the cached inode itself.
        const got = await hashedCopy(join(hit.dir, OUTPUT), tmp, { replacing, signal: opts.signal });
        if (got.sha256 !== entry.sha256 || got.bytes !== entry.bytes) {
          intact = false;
          throw new CacheMiss();
        }
        if (!entry.verity) return [];
        const record = veritySidecarPath(final);
        const companion = { tmp: temporaryPathFor(record), final: record };
        await writeFile(companion.tmp, renderVeritySidecar({ ...entry.verity, hashPath: final }));
        return [companion];
      },
      { signal: opts.signal, ...(opts.beforePublish ? { beforePublish: opts.beforePublish } : {}) },
    ).catch(async (e: unknown) => {
      if (!(e instanceof CacheMiss) && !(e instanceof Error && e.cause instanceof CacheMiss)) throw e;
    });
    if (!intact) {
      await this.discard(entry.key);
      return undefined;
    }
    await this.notePublished(hit.dir, final);
    return this.publishedResult(hit, final);
  }

  /**
   * Whether `final` already is this entry's output, as a file of its own: a
   * rebuild into the path the previous build published to. It is then kept
   * rather than replaced by a copy of the same bytes (for a 63 MB erofs image
   * on ext4 the copy and the rename cost 35-40 ms and 63 MB of writes), and
   * held to the rules a copy is: its SHA-256 and size must be the recorded
   * ones, it must not be the cache's own file (a hard link someone made: the
   * user's output must be theirs to write), and the target check runs. It
   * gets the time of a fresh publish (make and friends compare times), and
   * its verity record is written again. Anything else: false, and it is
   * replaced as usual.
   */
  private async keptInPlace(
    hit: CachedBuild,
    final: string,
    st: Stats,
    opts: { signal?: AbortSignal | undefined; beforePublish?: () => Promise<void> },
  ): Promise<boolean> {
    const { entry } = hit;
    if (st.size !== entry.bytes) return false;
    const cached = await stat(join(hit.dir, OUTPUT)).catch(() => undefined);
    if (!cached || (cached.dev === st.dev && cached.ino === st.ino)) return false;
    if (!(await this.unchangedSincePublished(hit, final))) {
      // A file that cannot be read here is replaced as usual, as it would have been.
      if (!(await sameEnds(final, join(hit.dir, OUTPUT), entry.bytes).catch(() => false))) return false;
      const got = await fileSha256(final, opts.signal).catch((e: unknown) => {
        if (opts.signal?.aborted) throw e;
        return undefined;
      });
      if (got?.sha256 !== entry.sha256 || got.bytes !== entry.bytes) return false;
    }
    await opts.beforePublish?.();
    const now = new Date();
    await utimes(final, now, now);
    await this.notePublished(hit.dir, final);
    if (entry.verity) {
      const record = veritySidecarPath(final);
      const verity = { ...entry.verity, hashPath: final };
      await writeAtomically(record, (tmp) => writeFile(tmp, renderVeritySidecar(verity)), { signal: opts.signal });
    }
    return true;
  }

  /**
   * Whether `final` is the very file this entry last published or kept
   * there, untouched since: its identity (device, inode, size, mtime and
   * ctime in nanoseconds) is the one recorded then. Any write to it, even
   * one that restores the mtime, changes its ctime, which no user can set
   * back: its bytes are still the ones hashed then, and it need not be read
   * again (a 63 MB erofs image: 75 ms of a 280 ms warm rebuild). The
   * security model of the store's blob ranges, docs/security.md.
   */
  private async unchangedSincePublished(hit: CachedBuild, final: string): Promise<boolean> {
    const record = await readFile(join(hit.dir, PUBLISHED), "utf8").catch(() => undefined);
    if (record === undefined) return false;
    const st = await stat(final, { bigint: true }).catch(() => undefined);
    return st !== undefined && record === `${final}\n${identityText(identityOf(st))}\n`;
  }

  /** Records `final`'s identity as this entry's last published copy (see unchangedSincePublished). Best effort: without it the next rebuild hashes. */
  private async notePublished(dir: string, final: string, known?: FileIdentity): Promise<void> {
    const identity = known ?? (await stat(final, { bigint: true }).then(identityOf, () => undefined));
    if (identity) await writeFileAtomic(join(dir, PUBLISHED), `${final}\n${identityText(identity)}\n`).catch(() => undefined);
  }

  /** After a publish: the output's result, and the entry marked as used. */
  private async publishedResult(hit: CachedBuild, final: string): Promise<OutputResult> {
    const { entry } = hit;
    // As after a build: a record an earlier --verity build left beside this path would describe another image.
    if (!entry.verity && VERITY_FORMATS.includes(entry.outputFormat)) await removeStaleVerityRecord(final);
    // The entry's mtime is its last use, for the LRU order of gc.
    const now = new Date();
    await utimes(join(hit.dir, ENTRY), now, now).catch(() => {});
    return {
      format: entry.outputFormat,
      path: final,
      bytes: entry.bytes,
      sha256: entry.sha256,
      ...(entry.verity ? { verity: { ...entry.verity, hashPath: final } } : {}),
      fromCache: true,
    };
  }

  /**
   * Stores a published output under `key`: a copy of the file (reflink where
   * possible), hashed as it is stored and checked against the build's own
   * SHA-256, so an output changed between its publishing and this copy is
   * not cached. Then the cache is trimmed to its cap.
   */
  async store(key: string, result: OutputResult, report: { entries: number; sourceReport?: Readonly<Record<string, unknown>> | undefined }): Promise<void> {
    if (result.sha256 === null) return;
    await mkdir(this.root, { recursive: true });
    const work = await mkdtemp(join(this.root, ".store-"));
    try {
      const before = await stat(result.path, { bigint: true }).then(identityOf, () => undefined);
      const got = await hashedCopy(result.path, join(work, OUTPUT), { replacing: false });
      if (got.sha256 !== result.sha256) return;
      // The published file was just hashed whole: if it did not change meanwhile, the next rebuild into it need not hash it again.
      const after = await stat(result.path, { bigint: true }).then(identityOf, () => undefined);
      const hashedAsIs = before && after && sameIdentity(before, after) ? after : undefined;
      const { hashPath: _published, ...verity } = result.verity ?? { hashPath: "" };
      const entry: BuildCacheEntry = {
        format: 1,
        key,
        outputFormat: result.format,
        sha256: got.sha256,
        bytes: got.bytes,
        ...(result.verity ? { verity: verity as Omit<VerityInfo, "hashPath"> } : {}),
        entries: report.entries,
        ...(report.sourceReport ? { sourceReport: report.sourceReport } : {}),
        createdAt: new Date().toISOString(),
      };
      await writeFile(join(work, ENTRY), JSON.stringify(entry, null, 2) + "\n");
      if (hashedAsIs) await this.notePublished(work, result.path, hashedAsIs);
      await rm(join(this.root, key), { recursive: true, force: true });
      await rename(work, join(this.root, key)).catch((e: NodeJS.ErrnoException) => {
        // A concurrent build stored the same key first: its bytes are the same.
        if (e.code !== "ENOTEMPTY" && e.code !== "EEXIST") throw e;
      });
    } finally {
      await rm(work, { recursive: true, force: true });
    }
    await this.gc({ maxBytes: this.maxBytes });
  }

  /** Every entry, most recently used first, with its size on disk. */
  async list(): Promise<(CachedBuild & { diskBytes: number })[]> {
    const names = await readdir(this.root).catch(() => [] as string[]);
    const out: (CachedBuild & { diskBytes: number })[] = [];
    for (const name of names) {
      if (name.startsWith(".")) continue;
      const hit = await this.lookup(name);
      if (!hit) continue;
      const diskBytes = await stat(join(hit.dir, OUTPUT)).then((s) => s.size, () => 0);
      out.push({ ...hit, diskBytes });
    }
    return out.sort((a, b) => b.lastUsedMs - a.lastUsedMs);
  }

  /**
   * Removes entries least recently used first until the rest fit in
   * `maxBytes`; with `all`, every entry; with `olderThanMs`, also every
   * entry unused for that long. Unfinished stores older than an hour go too.
   */
  async gc(opts: { maxBytes?: number; all?: boolean; olderThanMs?: number; now?: number } = {}): Promise<{ removed: number; bytes: number }> {
    const now = opts.now ?? Date.now();
    const maxBytes = opts.maxBytes ?? this.maxBytes;
    let removed = 0;
    let bytes = 0;
    let kept = 0;
    for (const e of await this.list()) {
      const old = opts.olderThanMs !== undefined && now - e.lastUsedMs > opts.olderThanMs;
      if (opts.all || old || kept + e.diskBytes > maxBytes) {
        await this.discard(e.entry.key);
        removed++;
        bytes += e.diskBytes;
      } else {
        kept += e.diskBytes;
      }
    }
    for (const name of await readdir(this.root).catch(() => [] as string[])) {
      if (!name.startsWith(".store-")) continue;
      const st = await stat(join(this.root, name)).catch(() => undefined);
      if (st && now - st.mtimeMs > 3_600_000) await rm(join(this.root, name), { recursive: true, force: true });
    }
    return { removed, bytes };
  }

  async discard(key: string): Promise<void> {
    await rm(join(this.root, key), { recursive: true, force: true });
  }
}

/** Bytes compared at each end of a file by sameEnds. */
const END_BYTES = 64 * 1024;

/**
 * Whether two files of `size` bytes have the same first and last 64 KiB: a
 * cheap first look before hashing a whole file that may well differ (a
 * rebuild of another variant of the same size into the same path). The
 * image formats put a superblock with a UUID derived from the tree at the
 * start (ext4, erofs) or tables at the end (squashfs); tar and cpio start
 * with the first names of the tree. Equal ends prove nothing: the hash
 * decides.
 */
async function sameEnds(a: string, b: string, size: number): Promise<boolean> {
  const len = Math.min(END_BYTES, size);
  const offsets = size > len ? [0, size - len] : [0];
  const ends = async (path: string): Promise<Buffer[]> => {
    const f = await open(path, "r");
    try {
      return await Promise.all(offsets.map(async (at) => {
        const { buffer, bytesRead } = await f.read(Buffer.alloc(len), 0, len, at);
        return buffer.subarray(0, bytesRead);
      }));
    } finally {
      await f.close();
    }
  };
  const [ea, eb] = await Promise.all([ends(a), ends(b)]);
  return ea.every((chunk, i) => chunk.length === len && chunk.equals(eb[i] as Buffer));
}

/** Thrown inside a publish when the copy does not match its record. */
class CacheMiss extends Error {}

