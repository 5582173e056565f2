import { A3sError } from "../../errors.js";
import { digestOf } from "../digest.js";
import type { LocalImage } from "../local-image.js";
import { formatReference, type ImageReference } from "../reference.js";
import { BlobUploader, type BlobOutcome } from "./blob-upload.js";
import type { RegistryClient } from "./client.js";
import { discard, registryMessage, type HttpResponse } from "./http.js";

/** Chunks of an upload that is too large for one request: large enough that the per-request cost is noise. */
export const DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024;

export interface PushOptions {
  /** Blobs larger than this are uploaded in chunks of this size (default 64 MiB). */
  readonly chunkBytes?: number;
  readonly signal?: AbortSignal;
  readonly progress?: (message: string) => void;
}

/** What a push did. */
export interface PushResult {
  /** The manifest's digest: what the tag now names. */
  readonly digest: string;
  /** "registry/repository:tag@sha256:…". */
  readonly reference: string;
  readonly uploaded: number;
  readonly mounted: number;
  readonly existing: number;
  readonly uploadedBytes: number;
  readonly restarts: number;
  readonly resumes: number;
  readonly manifest: "put" | "existing";
}

/**
 * Pushes an image (or artifact) made on this host to `ref`: every blob the
 * manifest names first (config and layers, see BlobUploader: what the
 * repository has is not sent, what another repository of the registry has
 * is mounted), then the manifest, last, under the tag. A push that stops
 * part way (killed, a network that does not come back) therefore never
 * leaves the tag pointing at a manifest whose blobs are missing; running
 * it again sends only what did not arrive. When the tag already names this
 * very manifest, nothing is put at all, so pushing the same build twice
 * uploads nothing the second time.
 */
export async function pushImage(client: RegistryClient, ref: ImageReference, image: LocalImage, opts: PushOptions = {}): Promise<PushResult> {
  if (ref.digest !== undefined) {
    throw new A3sError("EUSAGE", `cannot push to ${formatReference(ref)}: a push names a tag, not a digest`, {
      subject: formatReference(ref),
      hint: "push to REGISTRY/REPOSITORY:TAG; the digest is reported when it is done",
    });
  }
  const tag = ref.tag ?? "latest";
  const manifest = image.manifest;
  // The descriptor was made from these bytes; a mismatch here is a bug, not a registry problem.
  if (digestOf(manifest.bytes) !== manifest.descriptor.digest) throw new Error(`manifest bytes do not match ${manifest.descriptor.digest}`);
  const uploader = new BlobUploader(client, ref, { chunkBytes: opts.chunkBytes ?? DEFAULT_CHUNK_BYTES, ...optional(opts) });
  const counts: Record<BlobOutcome, number> = { existing: 0, mounted: 0, uploaded: 0 };
  for (const blob of image.blobs) {
    opts.signal?.throwIfAborted();
    const outcome = await uploader.put(blob);
    counts[outcome]++;
    if (outcome === "uploaded") opts.progress?.(`${blob.descriptor.digest.slice(0, 19)}: uploaded ${blob.descriptor.size} bytes`);
  }
  opts.signal?.throwIfAborted();
  const subject = `${ref.registry}/${ref.repository}:${tag}`;
  const state = await putManifest(client, ref, tag, manifest, subject);
  return {
    digest: manifest.descriptor.digest,
    reference: `${ref.registry}/${ref.repository}:${tag}@${manifest.descriptor.digest}`,
    ...counts,
    uploadedBytes: uploader.stats.uploadedBytes,
    restarts: uploader.stats.restarts,
    resumes: uploader.stats.resumes,
    manifest: state,
  };
}

function optional(opts: PushOptions): { signal?: AbortSignal; progress?: (m: string) => void } {
  return { ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.progress ? { progress: opts.progress } : {}) };
}

/** HEAD the tag; PUT the manifest unless the tag names it already. The registry's digest must be ours. */
async function putManifest(
  client: RegistryClient,
  ref: ImageReference,
  tag: string,
  manifest: LocalImage["manifest"],
  subject: string,
): Promise<"put" | "existing"> {
  const mediaType = manifest.descriptor.mediaType;
  const head = await client.request(ref, "HEAD", `manifests/${tag}`, subject, { accept: mediaType }, { access: "push" });
  discard(head);
  if (head.status === 200 && header(head, "docker-content-digest") === manifest.descriptor.digest) return "existing";
  const res = await client.request(ref, "PUT", `manifests/${tag}`, subject, { "content-type": mediaType }, { access: "push", body: manifest.bytes });
  if (res.status !== 201 && res.status !== 200) {
    const detail = await registryMessage(res);
    throw new A3sError(res.status === 403 ? "EAUTH" : "EREGISTRY", `pushing the manifest of ${subject}: the registry answered ${res.status}${detail}`, {
      subject,
      hint: res.status === 403 ? "these credentials may not push to this repository" : "the registry refused the manifest; its blobs were pushed and stay",
    });
  }
  discard(res);
  const named = header(res, "docker-content-digest");
  if (named !== undefined && named !== manifest.descriptor.digest) {
    throw new A3sError("EREGISTRY", `${subject}: the registry stored the manifest as ${named}, not ${manifest.descriptor.digest}`, {
      subject,
      hint: "the registry rewrote the manifest; pull it by tag to see what it holds",
    });
  }
  return "put";
}

function header(res: HttpResponse, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}
