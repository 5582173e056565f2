import type { Command } from "commander";
import { gcWarmTemplates, listWarmTemplates, warmTemplateRoot } from "../boot/warm-templates.js";
import { A3sError } from "../errors.js";
import { ContentStore } from "../oci/store/content-store.js";
import { BuildCache } from "../outputs/build-cache.js";
import { ImageRecords } from "../oci/store/image-records.js";
import { gcCodeCaches } from "./code-cache-gc.js";
import { action } from "./command-runner.js";
import { humanBytes } from "./format.js";

/**
 * Blobs younger than this survive a gc even when no image record names them:
 * a build running right now has stored them but not yet recorded its image.
 */
const IN_USE_GRACE_MS = 60 * 60 * 1000;
/** run --warm templates no run used for this long go in a gc without --older-than. */
const WARM_TEMPLATE_DAYS = 7;

interface GcFlags {
  olderThan?: string;
  all?: boolean;
  json?: boolean;
}

export function registerCacheCommand(program: Command): void {
  const cache = program.command("cache").description("list, verify and clean the image cache (blobs by digest in the user's cache directory)");

  cache
    .command("ls")
    .description("list cached images and what the blob store holds")
    .option("--json", "print one JSON object")
    .action(
      action(async (_ctx, flags: { json?: boolean }) => listCache(flags.json === true)),
    );

  cache
    .command("verify")
    .description("hash every cached blob and remove each whose bytes do not match its digest; exit 1 if any did")
    .option("--keep", "only report bad blobs, remove nothing")
    .option("--json", "print one JSON object: {store, checked, bytes, bad: [{digest, path, problem, removed}]}")
    .addHelpText(
      "after",
      "\nBuilds hash every blob they read, so a corrupt blob never reaches a rootfs; this checks the whole\n" +
        "cache at once (after a disk error, say). A removed blob is fetched again by the next build that needs it.",
    )
    .action(
      action(async ({ signal }, flags: { keep?: boolean; json?: boolean }) => verifyCache(flags, signal)),
    );

  cache
    .command("gc")
    .description(
      `delete cached blobs that no remembered image needs and no running a3s-rootfs process uses, run --warm templates not used for ${WARM_TEMPLATE_DAYS} days, ` +
        "and build outputs least recently used first until the build cache is under its cap",
    )
    .option("--older-than <DAYS>", "first forget images, and remove warm templates, not used for this many days")
    .option("--all", "forget every image, delete every blob (but those in use), every warm template and every cached build output")
    .option("--json", "print one JSON object: {forgotten, removed, bytes, inUse, warmTemplates: {removed, bytes}, builds: {removed, bytes}}")
    .action(
      action(async (_ctx, flags: GcFlags) => collectGarbage(flags)),
    );
}

/** `cache ls`: the blob store and the images it holds, the warm templates, the build cache. */
async function listCache(json: boolean): Promise<void> {
  const store = new ContentStore();
  const blobs = await store.list();
  const sizes = new Map(blobs.map((b) => [b.digest, b.size]));
  const images = (await new ImageRecords().list()).map((r) => ({
    reference: r.reference,
    platform: r.platform,
    manifestDigest: r.manifestDigest,
    lastUsed: r.lastUsed,
    bytes: r.digests.reduce((n, d) => n + (sizes.get(d) ?? 0), 0),
  }));
  const total = blobs.reduce((n, b) => n + b.size, 0);
  const warm = (await listWarmTemplates()).templates.map((t) => ({ path: t.path, bytes: t.bytes, lastUsed: new Date(t.lastUsedMs).toISOString() }));
  const buildCache = new BuildCache();
  const builds = (await buildCache.list()).map((b) => ({
    key: b.entry.key,
    format: b.entry.outputFormat,
    bytes: b.diskBytes,
    sha256: b.entry.sha256,
    source: typeof b.entry.sourceReport?.reference === "string" ? b.entry.sourceReport.reference : null,
    lastUsed: new Date(b.lastUsedMs).toISOString(),
  }));
  if (json) {
    process.stdout.write(JSON.stringify({ store: store.root, blobs: blobs.length, bytes: total, images, warmTemplates: warm, builds: { root: buildCache.root, maxBytes: buildCache.maxBytes, entries: builds } }) + "\n");
    return;
  }
  process.stdout.write(`${store.root}: ${blobs.length} blobs, ${humanBytes(total)}\n`);
  for (const i of images) {
    process.stdout.write(`  ${i.reference}  ${i.platform}  ${i.manifestDigest.slice(0, 19)}  ${humanBytes(i.bytes)}  last used ${i.lastUsed}\n`);
  }
  if (warm.length) {
    process.stdout.write(`${warmTemplateRoot()}: ${warm.length} warm templates, ${humanBytes(warm.reduce((n, t) => n + t.bytes, 0))}\n`);
    for (const t of warm) process.stdout.write(`  ${t.path}  ${humanBytes(t.bytes)}  last used ${t.lastUsed}\n`);
  }
  const buildBytes = builds.reduce((n, b) => n + b.bytes, 0);
  process.stdout.write(`${buildCache.root}: ${builds.length} cached build outputs, ${humanBytes(buildBytes)} of at most ${humanBytes(buildCache.maxBytes)}\n`);
  for (const b of builds) process.stdout.write(`  ${b.key.slice(0, 16)}  ${b.format.padEnd(8)} ${humanBytes(b.bytes)}  ${b.source ?? ""}  last used ${b.lastUsed}\n`);
}

/** `cache verify`: every blob hashed; bad ones reported and (without --keep) removed. Exit 1 if any was bad. */
async function verifyCache(flags: { keep?: boolean; json?: boolean }, signal: AbortSignal): Promise<number> {
  const store = new ContentStore();
  const result = await store.verifyAll({
    remove: flags.keep !== true,
    signal,
    onBlob: (_digest, problem) => {
      if (problem && !flags.json) process.stderr.write(`a3s-rootfs: bad: ${problem}\n`);
    },
  });
  if (flags.json) process.stdout.write(JSON.stringify({ store: store.root, ...result }) + "\n");
  else {
    const removed = result.bad.filter((b) => b.removed).length;
    process.stdout.write(
      `${store.root}: checked ${result.checked} blobs, ${humanBytes(result.bytes)}: ` +
        (result.bad.length === 0 ? "all match their digests\n" : `${result.bad.length} bad, ${removed} removed\n`),
    );
  }
  return result.bad.length > 0 ? 1 : 0;
}

/** `cache gc`: image records forgotten by age, then the blobs, warm templates, build outputs and CLI code caches nothing keeps. */
async function collectGarbage(flags: GcFlags): Promise<void> {
  const store = new ContentStore();
  const records = new ImageRecords();
  let days: number | undefined;
  if (flags.olderThan !== undefined) {
    days = Number(flags.olderThan);
    if (!Number.isFinite(days) || days < 0) {
      throw new A3sError("EUSAGE", `--older-than must be a number of days, not ${JSON.stringify(flags.olderThan)}`);
    }
  }
  const now = Date.now();
  let forgotten = 0;
  const keep = new Set<string>();
  for (const r of await records.list()) {
    const age = now - Date.parse(r.lastUsed);
    if (flags.all || (days !== undefined && age > days * 86_400_000)) {
      await records.forget(r.file);
      forgotten++;
    } else {
      for (const d of r.digests) keep.add(d);
    }
  }
  if (!flags.all) {
    for (const b of await store.list()) if (now - b.mtimeMs < IN_USE_GRACE_MS) keep.add(b.digest);
  }
  // Blobs a running build, run or inspect uses are kept (the store's use records), --all included.
  const { removed, bytes, inUse } = await store.gc(keep, now);
  const warm = await gcWarmTemplates({ olderThanMs: (days ?? WARM_TEMPLATE_DAYS) * 86_400_000, all: flags.all === true, now });
  const builds = await new BuildCache().gc({ all: flags.all === true, ...(days !== undefined ? { olderThanMs: days * 86_400_000 } : {}), now });
  const codeCaches = await gcCodeCaches(flags.all === true);
  if (flags.json) {
    process.stdout.write(JSON.stringify({ forgotten, removed, bytes, inUse, warmTemplates: warm, builds, codeCaches }) + "\n");
    return;
  }
  const kept = inUse > 0 ? `; kept ${inUse} in use by running processes` : "";
  process.stdout.write(
    `forgot ${forgotten} images; removed ${removed} blobs, ${humanBytes(bytes)}${kept}; ${warm.removed} warm templates, ${humanBytes(warm.bytes)}; ` +
      `${builds.removed} cached build outputs, ${humanBytes(builds.bytes)}; ${codeCaches.removed} stale CLI code caches, ${humanBytes(codeCaches.bytes)}\n`,
  );
}
