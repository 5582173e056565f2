import { join } from "node:path";
import { A3sError, isA3sError } from "../../errors.js";
import { Semaphore } from "../../util/concurrency.js";
import { digestOf, parseDigest } from "../digest.js";
import { ContentStore, CORRUPT_BLOB } from "../store/content-store.js";
import type { FileIdentity } from "../../util/file-identity.js";
import type { WriteProgress } from "../../util/write-progress.js";
import { BlobLocations } from "./blob-locations.js";
import { dockerCredentials, type RegistryCredentials } from "./credentials.js";
import { MAX_MANIFEST_BYTES, parseManifest, type Descriptor, type ImageIndex, type ImageManifest, type ParsedManifest } from "../manifest.js";
import { MANIFEST_ACCEPT } from "../media-types.js";
import { chooseFromIndex, formatPlatform, offeredPlatforms, type Platform } from "../platform.js";
import { formatReference, manifestSelector, registryApiHost, type ImageReference } from "../reference.js";
import { pullScope, pushScope, RegistryAuth } from "./auth.js";
import { discard, httpRequest, plainHttpAllowed, readBody, redact, registryMessage, type BodySource, type HttpMethod, type HttpResponse } from "./http.js";
import {
  backoffDelay,
  DEFAULT_RETRY,
  isRetriableNetworkError,
  isRetriableStatus,
  parseRetryAfter,
  sleep,
  type RetryPolicy,
} from "./retry.js";

export interface RegistryClientOptions {
  /** Where manifests and blobs are kept; the user's cache by default. */
  readonly store?: ContentStore;
  /** --creds: used for every registry, instead of docker's config. */
  readonly credentials?: RegistryCredentials;
  /** How credentials are found when not given; docker's config.json and helpers by default. */
  readonly credentialLookup?: (registry: string) => Promise<RegistryCredentials | undefined>;
  /** Allow plain HTTP and unverified TLS to registries that are not on loopback. */
  readonly insecure?: boolean;
  readonly retry?: Partial<RetryPolicy>;
  /** Blob downloads at once (default 3). */
  readonly concurrency?: number;
  /** Socket idle timeout (default 30 s). */
  readonly timeoutMs?: number;
  readonly warn?: (message: string) => void;
  /** Progress lines (waiting for another process's download). */
  readonly progress?: (message: string) => void;
  /** Where blobs were seen, for cross-repository mounts (default: beside the store, ROOT/sources). */
  readonly locations?: BlobLocations;
}

/** A manifest or index, verified against its digest. */
export interface FetchedManifest {
  readonly digest: string;
  readonly bytes: Buffer;
  readonly manifest: ParsedManifest;
  /** True when it came from the content store (no body downloaded). */
  readonly cached: boolean;
}

/** A manifest's bytes, verified against its digest but not parsed. */
export interface ManifestDocument {
  readonly digest: string;
  readonly bytes: Buffer;
  /** The media type it was served or described with, when known. */
  readonly contentType: string | undefined;
  /** "registry/repository:tag" or "…@digest", for messages. */
  readonly subject: string;
  readonly cached: boolean;
}

/** An image manifest picked for one platform, with its config. */
export interface ResolvedManifest {
  /** The index the reference named, when it named one. */
  readonly indexDigest?: string;
  readonly manifestDigest: string;
  readonly manifest: ImageManifest;
  readonly configBytes: Buffer;
  /** Every manifest and index digest walked to get here (kept by the cache's gc). */
  readonly manifestDigests: readonly string[];
}

/** What a client did, for reports, benchmarks and tests. */
export interface RegistryStats {
  /** HTTP requests the registry answered (a failed TLS probe of a plain-HTTP registry is not one). */
  requests: number;
  manifestGets: number;
  manifestHeads: number;
  blobGets: number;
  /** Blob bytes that came over the network (resumed ranges counted once). */
  blobBytes: number;
  retries: number;
  resumes: number;
  /** Blobs another process on this host fetched while this one waited for it (not downloaded here). */
  sharedBlobs: number;
}

export interface FetchBlobOptions {
  readonly onProgress?: (received: number, total: number) => void;
  /** Stops the download (its temporary is removed) when the caller no longer needs it. */
  readonly signal?: AbortSignal;
  /**
   * Sees every byte as it arrives, in order, each byte once (resumed ranges
   * included), before the store has it. The blob is only verified at its end:
   * a consumer must treat what it saw as unverified until fetchBlob resolves.
   */
  readonly onChunk?: (bytes: Buffer) => void | Promise<void>;
  /**
   * Called with the store's temporary file once the download into it
   * starts, and how far it has got (PutOptions.follow); never called when
   * the blob was in the store already, or another process fetched it.
   */
  readonly follow?: (temporary: string, progress: WriteProgress) => void;
}

/** Largest image config read into memory; real ones are kilobytes. */
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;
/** How deep indexes may nest before it is a loop or an attack. */
const MAX_INDEX_DEPTH = 4;
/** Interruptions of one blob download that may be resumed before giving up. */
const MAX_RESUMES = 20;

interface RegistryState {
  scheme: "https" | "http" | undefined;
  readonly auth: RegistryAuth;
}

/**
 * The pull side of the OCI distribution spec. Every manifest and blob is
 * hashed by us as it arrives and checked against the digest that named it
 * (and the size its descriptor declares) before anything uses it: a registry,
 * a mirror or anyone on the path can serve bytes, but only the right bytes get
 * into the content store.
 */
export class RegistryClient {
  readonly store: ContentStore;
  readonly locations: BlobLocations;
  readonly stats: RegistryStats = { requests: 0, manifestGets: 0, manifestHeads: 0, blobGets: 0, blobBytes: 0, retries: 0, resumes: 0, sharedBlobs: 0 };
  private readonly opts: RegistryClientOptions;
  private readonly retry: RetryPolicy;
  private readonly registries = new Map<string, RegistryState>();
  private readonly slots: Semaphore;

  constructor(opts: RegistryClientOptions = {}) {
    this.opts = opts;
    this.store = opts.store ?? new ContentStore();
    this.locations = opts.locations ?? new BlobLocations(join(this.store.root, "sources"));
    this.retry = { ...DEFAULT_RETRY, ...opts.retry };
    this.slots = new Semaphore(Math.max(1, opts.concurrency ?? 3));
  }

  /** Token fetches so far, over every registry. */
  get tokenFetches(): number {
    let n = 0;
    for (const r of this.registries.values()) n += r.auth.tokenFetches;
    return n;
  }

  /**
   * Resolves a reference to one image manifest for `platform`, walking
   * (nested) indexes, and reads its config. Everything it reads is verified
   * and kept in the store, so the same digest is never downloaded twice.
   */
  async resolve(ref: ImageReference, platform: Platform): Promise<ResolvedManifest> {
    const top = await this.getManifest(ref, manifestSelector(ref));
    const walked = [top.digest];
    let image: FetchedManifest | undefined = top;
    if (top.manifest.kind === "index") {
      image = await this.pickFromIndex(ref, top.manifest, platform, walked, 1);
      if (!image) {
        const offered = offeredPlatforms(top.manifest);
        throw new A3sError("EPLATFORM", `${formatReference(ref)} has no image for ${formatPlatform(platform)}`, {
          subject: formatReference(ref),
          hint: offered.length ? `it offers ${[...new Set(offered)].join(", ")}; choose one with --platform` : "the index lists no runnable images",
        });
      }
    }
    const manifest = image.manifest as ImageManifest;
    const configBytes = await this.readSmallBlob(ref, manifest.config, MAX_CONFIG_BYTES);
    return {
      ...(top.manifest.kind === "index" ? { indexDigest: top.digest } : {}),
      manifestDigest: image.digest,
      manifest,
      configBytes,
      manifestDigests: walked,
    };
  }

  private async pickFromIndex(
    ref: ImageReference,
    index: ImageIndex,
    platform: Platform,
    walked: string[],
    depth: number,
  ): Promise<FetchedManifest | undefined> {
    const choice = chooseFromIndex(index, platform);
    if (choice.manifest) {
      const m = await this.getManifest(ref, choice.manifest.digest, choice.manifest);
      walked.push(m.digest);
      return m;
    }
    for (const entry of choice.nested) {
      if (depth >= MAX_INDEX_DEPTH) {
        throw new A3sError("EMANIFEST", `${formatReference(ref)}: indexes nest more than ${MAX_INDEX_DEPTH} deep`, { subject: entry.digest });
      }
      const nested = await this.getManifest(ref, entry.digest, entry);
      walked.push(nested.digest);
      if (nested.manifest.kind !== "index") continue;
      const found = await this.pickFromIndex(ref, nested.manifest, platform, walked, depth + 1);
      if (found) return found;
    }
    return undefined;
  }

  /**
   * A manifest by tag or digest. By digest, the store answers without a
   * request when it has it. By tag, a HEAD asks the registry which digest
   * the tag names now, and the body is fetched only when that digest is new.
   * `expected` is the descriptor that named it (an index entry): its size
   * and media type must match too.
   */
  async getManifest(ref: ImageReference, selector: string, expected?: Descriptor): Promise<FetchedManifest> {
    // Parsed before it is stored, so a document that is not a manifest we take never enters the store.
    const doc = await this.getManifestDocument(ref, selector, expected, (bytes, contentType, subject) => {
      checkDescribedType(parseManifest(bytes, subject, contentType), expected, subject);
    });
    const manifest = parseManifest(doc.bytes, doc.subject, doc.contentType);
    checkDescribedType(manifest, expected, doc.subject);
    return { digest: doc.digest, bytes: doc.bytes, manifest, cached: doc.cached };
  }

  /**
   * The bytes of a manifest by tag or digest, checked against its digest
   * (and `expected`'s size) and kept in the store, but not parsed: for a
   * caller that reads documents other than images (a3s boot image
   * artifacts). At most MAX_MANIFEST_BYTES are read. `accept` sees a
   * downloaded document before it is stored, and throws to refuse it.
   */
  async getManifestDocument(
    ref: ImageReference,
    selector: string,
    expected?: Descriptor,
    accept?: (bytes: Buffer, contentType: string | undefined, subject: string) => void,
  ): Promise<ManifestDocument> {
    const byDigest = selector.includes(":");
    const subject = `${ref.registry}/${ref.repository}${byDigest ? "@" : ":"}${selector}`;
    if (byDigest && (await this.store.has(selector, expected?.size))) {
      const bytes = await this.readStored(selector, "manifest");
      if (bytes) return { digest: selector, bytes, contentType: expected?.mediaType, subject, cached: true };
    }
    if (!byDigest) {
      const head = await this.request(ref, "HEAD", `manifests/${selector}`, subject, { accept: MANIFEST_ACCEPT });
      discard(head);
      this.stats.manifestHeads++;
      if (head.status === 404) throw await notFound(head, subject, "manifest");
      const named = validDigest(header(head, "docker-content-digest"));
      if (head.status === 200 && named && (await this.store.has(named))) {
        const bytes = await this.readStored(named, "manifest");
        if (bytes) return { digest: named, bytes, contentType: header(head, "content-type"), subject, cached: true };
      }
    }
    const res = await this.request(ref, "GET", `manifests/${selector}`, subject, { accept: MANIFEST_ACCEPT });
    this.stats.manifestGets++;
    if (res.status !== 200) throw await statusError(res, subject, "manifest");
    const limit = Math.min(MAX_MANIFEST_BYTES, expected?.size ?? MAX_MANIFEST_BYTES);
    const bytes = await readBody(res, limit, subject);
    const served = validDigest(header(res, "docker-content-digest"));
    // By digest, the digest we asked for is the truth; by tag, the registry's
    // header is only a claim, checked like any other (sha256 when it makes none).
    const digest = byDigest ? selector : (served ?? "sha256:");
    const actual = digestOf(bytes, digest);
    if (byDigest || served) {
      if (actual !== digest) {
        throw new A3sError("EDIGEST", `digest mismatch for manifest ${subject}: expected ${digest}, got ${actual}`, {
          subject,
          hint: "the registry served other content than the digest names; nothing was stored",
        });
      }
    }
    if (expected && bytes.length !== expected.size) {
      throw new A3sError("ESIZE", `manifest ${subject} has ${bytes.length} bytes but its descriptor declares ${expected.size}`, { subject });
    }
    accept?.(bytes, header(res, "content-type"), subject);
    await this.store.putBytes(actual, bytes);
    return { digest: actual, bytes, contentType: header(res, "content-type"), subject, cached: false };
  }

  /** A small blob (a config) read whole, through the store. */
  async readSmallBlob(ref: ImageReference, desc: Descriptor, maxBytes: number): Promise<Buffer> {
    if (desc.size > maxBytes) {
      throw new A3sError("ESIZE", `blob ${desc.digest} declares ${desc.size} bytes, more than the ${maxBytes} allowed for it`, { subject: desc.digest });
    }
    await this.fetchBlob(ref, desc);
    const bytes = await this.readStored(desc.digest, "blob");
    if (bytes) return bytes;
    await this.fetchBlob(ref, desc);
    return this.store.readBytes(desc.digest);
  }

  /**
   * A stored document, hashed as it is read. A copy that does not match its
   * digest has been removed by the store: the caller fetches it again.
   */
  private async readStored(digest: string, what: string): Promise<Buffer | undefined> {
    try {
      return await this.store.readBytes(digest);
    } catch (e) {
      if (!isA3sError(e, CORRUPT_BLOB)) throw e;
      this.opts.warn?.(`${e.message}; fetching the ${what} again`);
      return undefined;
    }
  }

  /**
   * Makes a blob available in the store and returns its path: nothing is
   * downloaded when it is already there. At most `concurrency` downloads run
   * at once; an interrupted one resumes where it stopped with a Range request.
   */
  async fetchBlob(ref: ImageReference, desc: Descriptor, opts: FetchBlobOptions = {}): Promise<string> {
    return (await this.fetchBlobVerified(ref, desc, opts)).path;
  }

  /**
   * `fetchBlob`, also returning the identity of the file when this call
   * stored it (its bytes were hashed as they were written, so it can be read
   * back without hashing it again); undefined when the store had it before,
   * and a read must then hash it (ContentStore.open does).
   */
  async fetchBlobVerified(ref: ImageReference, desc: Descriptor, opts: FetchBlobOptions = {}): Promise<{ path: string; identity: FileIdentity | undefined }> {
    parseDigest(desc.digest);
    const stored = { path: this.store.path(desc.digest), identity: undefined };
    if (await this.store.has(desc.digest, desc.size)) return stored;
    const fetched = await this.slots.run(async () => {
      if (await this.store.has(desc.digest, desc.size)) return stored;
      checkAborted(opts.signal, desc.digest);
      // Processes on this host that need the same blob download it once: the
      // others wait for the lock, then find it stored.
      const lock = await this.store.fetchLock(desc.digest, {
        ...(opts.signal ? { signal: opts.signal } : {}),
        onWait: (owner) => this.opts.progress?.(`${desc.digest.slice(0, 19)}: another process (pid ${owner.pid}) is fetching it; waiting`),
      });
      try {
        if (await this.store.has(desc.digest, desc.size)) {
          this.stats.sharedBlobs++;
          return stored;
        }
        return await this.store.putVerified(desc.digest, this.blobBytes(ref, desc, opts), { size: desc.size, ...(opts.follow ? { follow: opts.follow } : {}) });
      } finally {
        await lock.release();
      }
    });
    await this.locations.record(ref.registry, ref.repository, desc.digest).catch(() => undefined);
    return fetched;
  }

  private async *blobBytes(ref: ImageReference, desc: Descriptor, opts: FetchBlobOptions): AsyncGenerator<Buffer> {
    const { onProgress, signal, onChunk } = opts;
    const subject = `${ref.registry}/${ref.repository}@${desc.digest}`;
    let received = 0;
    let resumes = 0;
    let stalls = 0;
    onProgress?.(0, desc.size);
    while (true) {
      const headers: Record<string, string> = { accept: "*/*" };
      if (received > 0) headers.range = `bytes=${received}-`;
      const res = await this.request(ref, "GET", `blobs/${desc.digest}`, subject, headers);
      this.stats.blobGets++;
      let skip = 0;
      if (res.status === 206 && received > 0) {
        const start = contentRangeStart(header(res, "content-range"));
        if (start === undefined || start > received) {
          discard(res);
          throw new A3sError("EREGISTRY", `blob ${subject}: the registry resumed at the wrong offset`, { subject });
        }
        skip = received - start;
      } else if (res.status === 200) {
        // The server ignored our Range: skip what we already have. The final
        // digest check still covers every byte.
        skip = received;
      } else {
        throw await statusError(res, subject, "blob");
      }
      const before = received;
      try {
        for await (const chunk of res.body) {
          checkAborted(signal, desc.digest);
          let bytes = chunk as Buffer;
          if (skip > 0) {
            const drop = Math.min(skip, bytes.length);
            skip -= drop;
            bytes = bytes.subarray(drop);
            if (bytes.length === 0) continue;
          }
          received += bytes.length;
          this.stats.blobBytes += bytes.length;
          onProgress?.(received, desc.size);
          if (onChunk) await onChunk(bytes);
          yield bytes;
        }
        // A body that ends early without an error (a proxy that closes the
        // connection) is an interruption like any other.
        if (received >= desc.size) return;
      } catch (e) {
        if (!isRetriableNetworkError(e)) throw e;
      }
      res.body.destroy();
      stalls = received > before ? 0 : stalls + 1;
      if (++resumes > MAX_RESUMES || stalls >= this.retry.attempts) {
        throw new A3sError("EREGISTRY", `blob ${subject}: the download kept being cut off (${received} of ${desc.size} bytes)`, {
          subject,
          hint: "the network or the registry is unreliable; try again later",
        });
      }
      this.stats.resumes++;
      if (stalls > 0) await sleep(backoffDelay(stalls, this.retry));
    }
  }

  private state(registry: string): RegistryState {
    let s = this.registries.get(registry);
    if (!s) {
      const given = this.opts.credentials;
      const lookup = this.opts.credentialLookup ?? ((r: string) => dockerCredentials(r, this.opts.warn ? { warn: this.opts.warn } : {}));
      s = {
        scheme: undefined,
        auth: new RegistryAuth({
          registry,
          credentials: () => (given ? Promise.resolve(given) : lookup(registry)),
          insecure: this.opts.insecure ?? false,
          retry: this.retry,
        }),
      };
      this.registries.set(registry, s);
    }
    return s;
  }

  /**
   * One registry API request with everything around it: https first (plain
   * http only where allowed, learnt once per registry), the Authorization for
   * the access it needs (pull by default), a new token or credentials on 401,
   * and retries with backoff (honouring Retry-After) on 429, 5xx and network
   * errors. `path` is below /v2/NAME/, or `opts.url` is a URL the registry
   * gave (an upload's Location); credentials go only to the registry's own
   * origin. A request with `retry: false` is sent once (apart from answering
   * a 401) and its failure statuses are returned: a blob upload decides for
   * itself what a failure means for the data it sent.
   */
  async request(
    ref: ImageReference,
    method: HttpMethod,
    path: string,
    subject: string,
    headers: Record<string, string>,
    opts: RegistryRequestOptions = {},
  ): Promise<HttpResponse> {
    const state = this.state(ref.registry);
    const access = opts.access ?? "pull";
    const scope = requestScope(ref.repository, access, opts.mountFrom);
    const host = registryApiHost(ref.registry);
    const retry = opts.retry ?? true;
    let challenges = 0;
    for (let attempt = 1; ; ) {
      const scheme = state.scheme ?? "https";
      const base = new URL(`${scheme}://${host}/v2/${ref.repository}/`);
      const url = opts.url ?? new URL(path, base);
      const authorization = url.origin === base.origin ? await state.auth.authorization(scope) : undefined;
      let res: HttpResponse;
      try {
        res = await httpRequest(url, {
          method,
          headers,
          ...(authorization !== undefined ? { authorization } : {}),
          ...(opts.body !== undefined ? { body: opts.body } : {}),
          insecure: this.opts.insecure ?? false,
          ...(this.opts.timeoutMs !== undefined ? { timeoutMs: this.opts.timeoutMs } : {}),
        });
      } catch (e) {
        const next = this.afterNetworkFailure(e, ref, url, state, opts, retry, attempt);
        if (next === "plain-http") state.scheme = "http";
        else {
          this.stats.retries++;
          await sleep(backoffDelay(attempt++, this.retry));
        }
        continue;
      }
      state.scheme ??= scheme;
      this.stats.requests++;
      if (res.status === 401) {
        discard(res);
        if (challenges++ < 3 && (await state.auth.challenge(res.headers["www-authenticate"], scope, authorization))) continue;
        throw await authRefused(state.auth, ref, access, opts.mountFrom, subject);
      }
      if (isRetriableStatus(res.status) && retry) {
        discard(res);
        this.stats.retries++;
        await sleep(this.retryDelay(res, ref, method, subject, attempt++));
        continue;
      }
      return res;
    }
  }

  /**
   * What follows a request that never got an answer: learn that the registry
   * speaks plain HTTP (a registry without TLS answers a TLS handshake with
   * garbage, and where plain HTTP is allowed that is the moment to learn
   * it), or retry a network error, or throw the error a user can act on.
   */
  private afterNetworkFailure(
    e: unknown,
    ref: ImageReference,
    url: URL,
    state: RegistryState,
    opts: RegistryRequestOptions,
    retry: boolean,
    attempt: number,
  ): "plain-http" | "retry" {
    if (isA3sError(e)) throw e;
    if (isCertificateError(e)) {
      throw new A3sError("EREGISTRY", `${ref.registry}: its TLS certificate is not trusted (${(e as Error).message})`, {
        subject: redact(url),
        hint: "add its CA with NODE_EXTRA_CA_CERTS=ca.pem, or pass --insecure to skip verification",
        cause: e,
      });
    }
    if (state.scheme === undefined && opts.url === undefined && plainHttpAllowed(url, this.opts.insecure ?? false)) return "plain-http";
    if (retry && attempt < this.retry.attempts && isRetriableNetworkError(e)) return "retry";
    if (!retry && isRetriableNetworkError(e)) throw e;
    const insecureHint = state.scheme === undefined ? " (a registry without TLS needs --insecure unless it is on loopback)" : "";
    throw new A3sError("EREGISTRY", `cannot reach ${ref.registry}: ${(e as Error).message}${insecureHint}`, {
      subject: redact(url),
      hint: "check the registry name, the network and any proxy",
      cause: e,
    });
  }

  /**
   * How long to wait before asking again after a 429 or 5xx: what the
   * registry asked for in Retry-After, else the backoff. Throws when the
   * registry asks for longer than we wait, or the attempts are used up.
   */
  private retryDelay(res: HttpResponse, ref: ImageReference, method: HttpMethod, subject: string, attempt: number): number {
    const asked = parseRetryAfter(header(res, "retry-after"));
    if (asked !== undefined && asked > this.retry.maxRetryAfterMs) {
      throw new A3sError("EREGISTRY", `${ref.registry} answered ${res.status} and asks to retry after ${Math.ceil(asked / 1000)} s`, {
        subject,
        hint: res.status === 429 ? "the registry's rate limit was hit; try again later or log in for a higher limit" : "try again later",
      });
    }
    if (attempt >= this.retry.attempts) {
      throw new A3sError("EREGISTRY", `${ref.registry} answered ${res.status} to ${method} ${subject} ${attempt} times`, {
        subject,
        hint: res.status === 429 ? "the registry's rate limit was hit; try again later or log in" : "the registry has trouble; try again later",
      });
    }
    return asked ?? backoffDelay(attempt, this.retry);
  }

  /** The retry policy this client follows (a blob upload paces its own restarts by it). */
  get retryPolicy(): RetryPolicy {
    return this.retry;
  }
}

/** What a request needs beyond its method and path. */
export interface RegistryRequestOptions {
  /** The access it needs on the reference's repository (default pull). */
  readonly access?: "pull" | "push";
  /** A cross-repository mount also needs pull on the repository the blob comes from. */
  readonly mountFrom?: string;
  /** An absolute URL the registry gave (an upload's Location), instead of `path`. */
  readonly url?: URL;
  readonly body?: string | Buffer | BodySource;
  /** Retry 429, 5xx and network failures (default true). */
  readonly retry?: boolean;
}

/** The token scope of a request (distribution's token spec; several scopes are separated by spaces). */
function requestScope(repository: string, access: "pull" | "push", mountFrom: string | undefined): string {
  const own = access === "push" ? pushScope(repository) : pullScope(repository);
  return mountFrom !== undefined && mountFrom !== repository ? `${own} ${pullScope(mountFrom)}` : own;
}

async function authRefused(auth: RegistryAuth, ref: ImageReference, access: "pull" | "push", mountFrom: string | undefined, subject: string): Promise<A3sError> {
  const known = await auth.hasCredentials();
  if (access === "push") {
    return new A3sError("EAUTH", `${ref.registry} refused ${known ? "our credentials for" : "an anonymous"} push to ${ref.repository}${mountFrom ? ` (mounting from ${mountFrom})` : ""}`, {
      subject,
      hint: known
        ? "check the user and password (--creds USER:PASSWORD, docker login) and that they may push to this repository"
        : `pushing needs a login: --creds USER:PASSWORD or docker login ${ref.registry}`,
    });
  }
  return new A3sError("EAUTH", `${ref.registry} refused ${known ? "our credentials" : "an anonymous pull"} of ${ref.repository}`, {
    subject,
    hint: known
      ? "check the user and password (--creds USER:PASSWORD, docker login) and that they may pull this repository"
      : `the repository needs a login: --creds USER:PASSWORD or docker login ${ref.registry}`,
  });
}

/**
 * TLS verification failures. These never fall back to plain HTTP: a
 * certificate that does not verify may be an attacker in the middle, and
 * answering it with HTTP would hand them the pull.
 */
function isCertificateError(e: unknown): boolean {
  const code = (e as { code?: string } | undefined)?.code ?? "";
  return /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ALTNAME/.test(code);
}

function checkAborted(signal: AbortSignal | undefined, digest: string): void {
  if (signal?.aborted) throw new A3sError("EABORTED", `download of ${digest} stopped: the build no longer needs it`, { subject: digest });
}

/** The media type the parent descriptor gave must be what the document is. */
function checkDescribedType(manifest: ParsedManifest, expected: Descriptor | undefined, subject: string): void {
  if (expected && expected.mediaType !== manifest.mediaType) {
    throw new A3sError("EMANIFEST", `manifest ${subject} is ${manifest.mediaType} but the index describes it as ${expected.mediaType}`, {
      subject,
      hint: "the index and the manifest disagree; refusing to guess which is right",
    });
  }
}

function header(res: HttpResponse, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function validDigest(d: string | undefined): string | undefined {
  if (d === undefined) return undefined;
  try {
    parseDigest(d.trim());
    return d.trim();
  } catch {
    return undefined;
  }
}

function contentRangeStart(value: string | undefined): number | undefined {
  const m = value ? /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(value.trim()) : null;
  return m ? Number(m[1]) : undefined;
}

async function notFound(res: HttpResponse, subject: string, what: string): Promise<A3sError> {
  return new A3sError("ENOTFOUND", `${what} ${subject} not found${await registryMessage(res)}`, {
    subject,
    hint: what === "manifest" ? "check the repository name and tag (docker.io names need their namespace, e.g. library/alpine)" : "the registry lost a blob its manifest names",
  });
}

async function statusError(res: HttpResponse, subject: string, what: string): Promise<A3sError> {
  if (res.status === 404) return notFound(res, subject, what);
  const message = await registryMessage(res);
  if (res.status === 403) {
    return new A3sError("EAUTH", `access to ${what} ${subject} denied${message}`, { subject, hint: "these credentials may not pull this repository" });
  }
  return new A3sError("EREGISTRY", `${what} ${subject}: the registry answered ${res.status}${message}`, { subject });
}

