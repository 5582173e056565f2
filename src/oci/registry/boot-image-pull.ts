import { A3sError, isA3sError } from "../../errors.js";
import { detectFileFormat, type FileFormat } from "../../formats/detect.js";
import { CORRUPT_BLOB } from "../store/content-store.js";
import { ImageRecords } from "../store/image-records.js";
import { formatPlatform, hostPlatform, platformMatches, type Platform } from "../platform.js";
import { formatReference, manifestSelector, type ImageReference } from "../reference.js";
import {
  isRootfsArtifactManifest,
  MAX_ARTIFACT_CONFIG_BYTES,
  MAX_BOOT_IMAGE_BYTES,
  parseRootfsArtifact,
  parseRootfsArtifactConfig,
  type ArtifactVerity,
  type BootImageFormat,
} from "../rootfs-artifact.js";
import type { RegistryClient } from "./client.js";

/** A boot image pulled from a registry into the content store, verified. */
export interface PulledBootImage {
  /** The reference as given, normalised. */
  readonly reference: string;
  readonly manifestDigest: string;
  readonly format: BootImageFormat;
  /** The image file in the store. Its bytes matched its digest in this process, just now. */
  readonly path: string;
  readonly digest: string;
  readonly size: number;
  readonly platform: Platform;
  readonly verity?: ArtifactVerity;
  /** Whether it came over the network (false: the store had it, and it was hashed again). */
  readonly downloaded: boolean;
}

export interface BootImagePullOptions {
  /** The platform the image must be for (default: the host's). */
  readonly platform?: Platform;
  /** The largest image accepted (default 64 GiB). */
  readonly maxBytes?: number;
  readonly progress?: (message: string) => void;
  readonly signal?: AbortSignal;
  /** Where the pull is recorded for `cache gc` (default: the user's cache; false: not recorded). */
  readonly records?: ImageRecords | false;
}

/**
 * Pulls the a3s boot image `ref` names (an artifact pushed with
 * `-o FORMAT:docker://REF`, see oci/rootfs-artifact.ts) into the content
 * store and returns its verified path; undefined when `ref` names something
 * else (a container image, an index), which the caller builds instead.
 *
 * Everything that comes from the registry is untrusted and checked before
 * use: the manifest against its digest and size limit, then as an artifact
 * (one layer, a boot image media type, a bounded size, consistent verity
 * annotations); the config against its digest, its size limit and the
 * manifest; the platform against the one wanted; the image against its
 * digest as it is stored (or, found in the store, hashed again now) and its
 * magic number against the format the manifest declares. Processes that
 * pull the same image at once download it once (the store's fetch lock),
 * and the blob counts as used by this process, so `cache gc` leaves it for
 * as long as the process runs (a VM booted from it).
 */
export async function pullBootImage(client: RegistryClient, ref: ImageReference, opts: BootImagePullOptions = {}): Promise<PulledBootImage | undefined> {
  const reference = formatReference(ref);
  const maxBytes = opts.maxBytes ?? MAX_BOOT_IMAGE_BYTES;
  const doc = await client.getManifestDocument(ref, manifestSelector(ref), undefined, (bytes, _type, subject) => {
    // A hostile artifact is refused before it enters the store.
    if (isRootfsArtifactManifest(bytes)) parseRootfsArtifact(bytes, subject, maxBytes);
  });
  if (!isRootfsArtifactManifest(doc.bytes)) return undefined;
  const artifact = parseRootfsArtifact(doc.bytes, doc.subject, maxBytes);
  const configBytes = await client.readSmallBlob(ref, artifact.config, MAX_ARTIFACT_CONFIG_BYTES);
  const platform = parseRootfsArtifactConfig(configBytes, `${ref.registry}/${ref.repository}@${artifact.config.digest}`, artifact);
  const wanted = opts.platform ?? hostPlatform();
  if (!platformMatches(wanted, platform)) {
    throw new A3sError("EPLATFORM", `${reference} is a boot image for ${formatPlatform(platform)}, not ${formatPlatform(wanted)}`, {
      subject: reference,
      hint: "push an image built for this host's architecture under another tag",
    });
  }
  const image = artifact.image;
  const label = `${image.digest.slice(0, 19)} (${artifact.format}, ${(image.size / 2 ** 20).toFixed(1)} MiB)`;
  let downloaded = false;
  let path: string | undefined;
  for (let attempt = 0; path === undefined; attempt++) {
    let quarter = -1;
    const fetched = await client.fetchBlobVerified(ref, image, {
      ...(opts.signal ? { signal: opts.signal } : {}),
      onProgress: (received, total) => {
        const q = total > 0 ? Math.floor((received / total) * 4) : 4;
        if (q !== quarter) opts.progress?.(`${label}: ${q >= 4 ? "downloaded" : `downloading (${q * 25} %)`}`);
        quarter = q;
      },
    });
    if (fetched.identity) {
      downloaded = true;
      path = fetched.path;
      break;
    }
    // Found in the store: not trusted because of its name, hashed again now.
    try {
      path = (await client.store.verify(image.digest, opts.signal ? { signal: opts.signal } : {})).path;
    } catch (e) {
      if (!isA3sError(e, CORRUPT_BLOB) || attempt > 0) throw e;
      opts.progress?.(`${e.message}; downloading it again`);
    }
  }
  await checkMagic(path, artifact.format, artifact.compression, reference);
  if (opts.records !== false) {
    await (opts.records ?? new ImageRecords()).record({
      reference,
      platform: formatPlatform(platform),
      manifestDigest: doc.digest,
      digests: [doc.digest, artifact.config.digest, image.digest],
      lastUsed: new Date().toISOString(),
    });
  }
  return {
    reference,
    manifestDigest: doc.digest,
    format: artifact.format,
    path,
    digest: image.digest,
    size: image.size,
    platform,
    ...(artifact.verity ? { verity: artifact.verity } : {}),
    downloaded,
  };
}

/** What the image's first bytes must be for the format its manifest declares. */
const EXPECTED_MAGIC: Readonly<Record<string, readonly FileFormat[]>> = {
  "erofs/none": ["erofs"],
  "ext4/none": ["ext4"],
  "squashfs/none": ["squashfs"],
  "cpio/none": ["newc"],
  "cpio/gzip": ["gzip"],
  "cpio/zstd": ["zstd"],
};

/**
 * The digest says the bytes are the ones pushed; this says they are what the
 * manifest calls them, so a manifest cannot make the boot path treat one
 * format as another (an ext4 handed to the erofs path, an initramfs as a disk).
 */
async function checkMagic(path: string, format: BootImageFormat, compression: string, reference: string): Promise<void> {
  const found = await detectFileFormat(path);
  const expected = EXPECTED_MAGIC[`${format}/${compression}`] ?? [];
  if (found === undefined || !expected.includes(found)) {
    throw new A3sError("EARTIFACT", `artifact ${reference}: its manifest says ${format}${compression === "none" ? "" : ` (${compression})`} but the image is ${found ?? "of no known format"}`, {
      subject: reference,
      hint: "the artifact is inconsistent; it was not pushed by a3s-rootfs or was altered",
    });
  }
}
