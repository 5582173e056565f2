import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { Readable } from "node:stream";
import { A3sError } from "../../errors.js";
import { parseDigest } from "../digest.js";
import { MAX_CONFIG_BYTES, parseImageConfig, type OciImageConfig } from "../image-config.js";
import type { ImageLayer, ImagePlatform, ResolvedImage } from "../image.js";
import { MAX_MANIFEST_BYTES, parseManifest, type Descriptor, type ImageIndex, type ImageManifest } from "../manifest.js";
import { OCI_INDEX } from "../media-types.js";
import { checkBlob } from "../verified-blob.js";
import { chooseFromIndex, formatPlatform, isAttestation, offeredPlatforms, platformMatches, type Platform } from "../platform.js";

/** The annotation that names an image in an OCI layout's index.json (image-spec image-layout.md). */
export const REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name";
const MAX_INDEX_DEPTH = 4;
const MAX_LAYOUT_FILE = 64 * 1024;

/**
 * The files of an OCI image layout, wherever they are: a directory
 * (`oci:DIR`), or the members of a tar (`docker save` from Docker 25 on).
 */
export interface LayoutFiles {
  /** Where the layout is, for messages. */
  readonly where: string;
  /** A file at the layout's root (oci-layout, index.json), at most `max` bytes; undefined when it is missing. */
  readRootFile(name: string, max: number): Promise<Buffer | undefined>;
  /** The size of a blob, or undefined when the layout does not have it. */
  blobSize(digest: string): Promise<number | undefined>;
  /** The blob's bytes as stored (not verified here). */
  openBlob(digest: string): Promise<NodeJS.ReadableStream>;
  /** Where a blob is, for messages: its file, or its member of an archive. */
  blobLocation(digest: string): string;
  /** The blob's own regular file, when it has one (a directory layout; not verified here). */
  blobFile?(digest: string): Promise<string | undefined>;
}

/** What choosing an image from a layout found, beyond the image itself. */
export interface LayoutChoice {
  readonly image: ResolvedImage;
  /** Things the user should hear about (an image for another platform than the host's). */
  readonly warnings: string[];
}

export interface LayoutOptions {
  /** The platform wanted; default: the host's. */
  readonly platform: Platform;
  /** True when the user named the platform: an image for another one is then an error, not a warning. */
  readonly platformChosen: boolean;
}

/** An OCI image layout in a directory. Blob paths come only from validated digests (no traversal). */
export function directoryLayout(dir: string): LayoutFiles {
  const root = resolve(dir);
  const blobPath = (digest: string): string => {
    const { algorithm, hex } = parseDigest(digest);
    return join(root, "blobs", algorithm, hex);
  };
  return {
    where: root,
    async readRootFile(name, max) {
      const path = join(root, name);
      const handle = await open(path, "r").catch(() => undefined);
      if (!handle) return undefined;
      try {
        const st = await handle.stat();
        if (!st.isFile()) return undefined;
        if (st.size > max) {
          throw new A3sError("EIMAGE", `${path} is larger than ${max} bytes`, { subject: path, hint: "this is not a valid OCI image layout" });
        }
        return await handle.readFile();
      } finally {
        await handle.close();
      }
    },
    async blobSize(digest) {
      const st = await stat(blobPath(digest)).catch(() => undefined);
      return st?.isFile() ? st.size : undefined;
    },
    async openBlob(digest) {
      const path = blobPath(digest);
      const st = await stat(path).catch(() => undefined);
      if (!st?.isFile()) throw missingBlob(root, digest);
      return st.size === 0 ? Readable.from([]) : createReadStream(path, { highWaterMark: 1 << 20 });
    },
    blobLocation: blobPath,
    async blobFile(digest) {
      const path = blobPath(digest);
      const st = await stat(path).catch(() => undefined);
      return st?.isFile() && st.size > 0 ? path : undefined;
    },
  };
}

/**
 * Chooses an image from an OCI image layout and reads its manifest and
 * config, verified, into a ResolvedImage whose layers read the layout's blobs.
 *
 * REF is a name (the `org.opencontainers.image.ref.name` annotation of an
 * index.json entry, as skopeo and umoci write it) or a digest (of an entry,
 * or of any manifest or index blob in the layout). Without REF the layout
 * must hold one image, or one per platform. An index, at the top or nested,
 * is resolved to the wanted platform as for a registry. Every JSON document
 * read is checked against its descriptor's digest and size: a layout is
 * content-addressed, and a blob that is not what its name says is refused.
 */
export async function chooseLayoutImage(files: LayoutFiles, ref: string | undefined, opts: LayoutOptions): Promise<LayoutChoice> {
  const label = `oci:${files.where}${ref === undefined ? "" : `:${ref}`}`;
  const marker = await files.readRootFile("oci-layout", MAX_LAYOUT_FILE);
  if (!marker) throw notLayout(files.where, "it has no oci-layout file");
  let version: unknown;
  try {
    version = (JSON.parse(marker.toString("utf8")) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
  } catch {
    version = undefined;
  }
  if (typeof version !== "string") throw notLayout(files.where, "its oci-layout file has no imageLayoutVersion");
  const indexBytes = await files.readRootFile("index.json", MAX_MANIFEST_BYTES);
  if (!indexBytes) throw notLayout(files.where, "it has no index.json");
  const index = parseManifest(indexBytes, `${files.where}/index.json`);
  if (index.kind !== "index") throw notLayout(files.where, "its index.json is not an image index");

  const candidates = await candidatesFor(files, index, ref, label);
  const chosen = await pickPlatform(files, { kind: "index", mediaType: OCI_INDEX, manifests: candidates }, opts.platform, label);
  const manifestDigest = chosen.descriptor.digest;
  const manifest = chosen.manifest;
  const configBytes = await readVerifiedBlob(files, manifest.config, MAX_CONFIG_BYTES);
  const config = parseImageConfig(configBytes, manifest.config.digest);
  const platform = configPlatform(config);
  const warnings: string[] = [];
  if (!platformMatches(opts.platform, platform)) {
    const message = `${label} is an image for ${formatPlatform(platform)}, not ${formatPlatform(opts.platform)}`;
    if (opts.platformChosen) throw new A3sError("EPLATFORM", message, { subject: label, hint: "the layout has no image for that platform under this name" });
    warnings.push(message);
  }
  const layers: ImageLayer[] = manifest.layers.map((d, i) => ({
    digest: d.digest,
    size: d.size,
    mediaType: d.mediaType,
    diffId: config.rootfs.diff_ids[i] ?? "",
    location: files.blobLocation(d.digest),
    open: () => files.openBlob(d.digest),
    file: async () => {
      const path = await files.blobFile?.(d.digest);
      return path === undefined ? undefined : { kind: "unchecked", path };
    },
    verify: async () => checkBlob(await files.openBlob(d.digest), { ...d, location: files.blobLocation(d.digest) }, label),
  }));
  return { image: { reference: label, manifestDigest, config, layers, platform }, warnings };
}

/** The index.json entries REF names (a name or a digest); all runnable entries when there is no REF. */
async function candidatesFor(files: LayoutFiles, index: ImageIndex, ref: string | undefined, label: string): Promise<Descriptor[]> {
  const entries = index.manifests.filter((d) => !isAttestation(d));
  const names = [...new Set(entries.map((d) => d.annotations?.[REF_NAME_ANNOTATION]).filter((n) => n !== undefined))];
  if (ref === undefined) {
    if (entries.length === 0) throw new A3sError("ENOTFOUND", `${label}: the layout holds no image`, { subject: files.where });
    // Several names: which one is meant is the user's call, not ours.
    if (names.length > 1) {
      throw new A3sError("EUSAGE", `${label} holds several images; name one: ${names.join(", ")}`, {
        subject: files.where,
        hint: `e.g. oci:${files.where}:${names[0]}`,
      });
    }
    return entries;
  }
  if (/^sha(256|512):/.test(ref)) {
    parseDigest(ref);
    const listed = entries.filter((d) => d.digest === ref);
    if (listed.length > 0) return listed.slice(0, 1);
    // Any manifest or index in the layout may be named by digest, listed or not.
    const size = await files.blobSize(ref);
    if (size === undefined) throw new A3sError("ENOTFOUND", `${label}: the layout has no blob ${ref}`, { subject: ref });
    const parsed = parseManifest(await readVerifiedBlob(files, { mediaType: "", digest: ref, size }, MAX_MANIFEST_BYTES), ref);
    return [{ mediaType: parsed.mediaType, digest: ref, size }];
  }
  const named = entries.filter((d) => d.annotations?.[REF_NAME_ANNOTATION] === ref);
  if (named.length === 0) {
    throw new A3sError("ENOTFOUND", `${label}: no image named ${JSON.stringify(ref)} in the layout`, {
      subject: ref,
      hint: names.length > 0 ? `it has: ${names.join(", ")}` : "its index.json names no image; give a digest instead",
    });
  }
  return named;
}

/**
 * The image manifest for `wanted` among an index's entries, looking into
 * nested indexes (a multi-platform image stored as an index blob) up to a
 * fixed depth, so a hostile layout cannot make the walk endless.
 */
async function pickPlatform(
  files: LayoutFiles,
  index: ImageIndex,
  wanted: Platform,
  label: string,
): Promise<{ descriptor: Descriptor; manifest: ImageManifest }> {
  const offered = new Set<string>();
  const found = await searchIndex(files, index, wanted, label, 0, offered);
  if (found) return found;
  throw new A3sError("EPLATFORM", `${label} has no image for ${formatPlatform(wanted)}`, {
    subject: label,
    hint: `it offers: ${[...offered].join(", ") || "no platform"}; choose one with --platform`,
  });
}

async function searchIndex(
  files: LayoutFiles,
  index: ImageIndex,
  wanted: Platform,
  label: string,
  depth: number,
  offered: Set<string>,
): Promise<{ descriptor: Descriptor; manifest: ImageManifest } | undefined> {
  for (const p of offeredPlatforms(index)) offered.add(p);
  const runnable = index.manifests.filter((d) => !isAttestation(d));
  const only = runnable.length === 1 && !runnable[0]?.platform ? runnable[0] : undefined;
  // One entry that names no platform is taken as it is: an image, or an index to look into.
  const choice = only ? { manifest: undefined, nested: [only] } : chooseFromIndex(index, wanted);
  const visit = choice.manifest ? [choice.manifest] : choice.nested;
  for (const entry of visit) {
    const doc = await readManifest(files, entry);
    if (doc.kind === "manifest") return { descriptor: entry, manifest: doc };
    if (depth >= MAX_INDEX_DEPTH) {
      throw new A3sError("EMANIFEST", `${label}: indexes nest more than ${MAX_INDEX_DEPTH} deep`, { subject: entry.digest });
    }
    const inner = await searchIndex(files, doc, wanted, label, depth + 1, offered);
    if (inner) return inner;
  }
  return undefined;
}

async function readManifest(files: LayoutFiles, d: Descriptor): Promise<ImageIndex | ImageManifest> {
  const bytes = await readVerifiedBlob(files, d, MAX_MANIFEST_BYTES);
  return parseManifest(bytes, d.digest, d.mediaType || undefined);
}

/**
 * A small blob, read whole and checked: no more than `max` bytes (and no
 * more than its descriptor says) are ever read, then its size and digest
 * must be exactly the descriptor's.
 */
export async function readVerifiedBlob(files: LayoutFiles, d: Pick<Descriptor, "digest" | "size" | "mediaType">, max: number): Promise<Buffer> {
  const { algorithm } = parseDigest(d.digest);
  if (d.size > max) {
    throw new A3sError("ESIZE", `${files.where}: blob ${d.digest} declares ${d.size} bytes, more than the ${max} allowed for it`, { subject: d.digest });
  }
  const parts: Buffer[] = [];
  let seen = 0;
  for await (const chunk of await files.openBlob(d.digest)) {
    const b = typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer);
    seen += b.length;
    if (seen > d.size) break;
    parts.push(b);
  }
  if (seen !== d.size) {
    throw new A3sError("ESIZE", `${files.where}: blob ${d.digest} has ${seen > d.size ? "more" : seen} bytes, its descriptor says ${d.size}`, {
      subject: d.digest,
      hint: "the layout is damaged or was altered",
    });
  }
  const bytes = Buffer.concat(parts);
  const actual = `${algorithm}:${createHash(algorithm).update(bytes).digest("hex")}`;
  if (actual !== d.digest) {
    throw new A3sError("EDIGEST", `${files.where}: blob ${d.digest} does not match its digest (it is ${actual})`, {
      subject: d.digest,
      hint: "the layout is damaged or was altered",
    });
  }
  return bytes;
}

export function configPlatform(config: OciImageConfig): ImagePlatform {
  return { os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) };
}

function notLayout(where: string, why: string): A3sError {
  return new A3sError("EIMAGE", `${where} is not an OCI image layout: ${why}`, {
    subject: where,
    hint: "make one with `skopeo copy docker://IMAGE oci:DIR:TAG` or `umoci init`",
  });
}

function missingBlob(where: string, digest: string): A3sError {
  return new A3sError("ENOENT", `${where}: blob ${digest} is missing from the layout`, {
    subject: digest,
    hint: "the layout is incomplete (a foreign or non-distributable layer?); copy the image again with skopeo",
  });
}
