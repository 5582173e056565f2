import { createHash, randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { cacheRoot } from "../../util/cache-dir.js";

/**
 * What the cache remembers of one image a build used: the digests it needs,
 * so garbage collection keeps exactly those blobs, and when it was last used,
 * so old images can be forgotten.
 */
export interface ImageRecord {
  /** The normalised reference ("docker.io/library/alpine:3.20", "oci:/path:tag"). */
  readonly reference: string;
  /** "os/arch[/variant]" the image was resolved for. */
  readonly platform: string;
  readonly manifestDigest: string;
  /** Every digest this image needs in the store: indexes, manifest, config, layer blobs, uncompressed layers. */
  readonly digests: readonly string[];
  /** ISO time of the last build that used it. */
  readonly lastUsed: string;
}

/**
 * Image records as small JSON files, one per reference and platform, in
 * CACHE/images. Each is replaced atomically (temp + rename), so concurrent
 * builds never leave a torn record for gc to misread.
 */
export class ImageRecords {
  readonly root: string;

  constructor(root?: string) {
    this.root = root ?? join(cacheRoot(), "images");
  }

  async record(r: ImageRecord): Promise<void> {
    await mkdir(this.root, { recursive: true });
    const name = createHash("sha256").update(`${r.reference}\n${r.platform}`).digest("hex").slice(0, 32);
    const final = join(this.root, `${name}.json`);
    const tmp = join(this.root, `.${name}.${process.pid}-${randomBytes(4).toString("hex")}.tmp`);
    await writeFile(tmp, JSON.stringify(r, null, 1) + "\n");
    try {
      await rename(tmp, final);
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
  }

  /** Every record, oldest use first. Unreadable files are skipped (a gc must not fail on them). */
  async list(): Promise<(ImageRecord & { readonly file: string })[]> {
    const names = await readdir(this.root).catch(() => [] as string[]);
    const out: (ImageRecord & { file: string })[] = [];
    for (const name of names) {
      if (!name.endsWith(".json") || name.startsWith(".")) continue;
      const file = join(this.root, name);
      try {
        const r = JSON.parse(await readFile(file, "utf8")) as ImageRecord;
        if (typeof r.reference === "string" && Array.isArray(r.digests) && typeof r.lastUsed === "string") out.push({ ...r, file });
      } catch {
        // A record being replaced right now, or damaged: skipped.
      }
    }
    return out.sort((a, b) => a.lastUsed.localeCompare(b.lastUsed));
  }

  async forget(file: string): Promise<void> {
    await rm(file, { force: true });
  }
}
