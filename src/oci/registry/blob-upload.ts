import { A3sError, isA3sError } from "../../errors.js";
import { openLocalBlobRange, type LocalBlob } from "../local-image.js";
import type { ImageReference } from "../reference.js";
import type { RegistryClient } from "./client.js";
import { discard, registryMessage, type HttpResponse } from "./http.js";
import { backoffDelay, isRetriableNetworkError, isRetriableStatus, parseRetryAfter, sleep } from "./retry.js";

/** How one blob got into the repository. */
export type BlobOutcome = "existing" | "mounted" | "uploaded";

export interface BlobUploadOptions {
  /** Blobs larger than this go in chunks of this size (PATCH with Content-Range); smaller ones in one PUT. */
  readonly chunkBytes: number;
  readonly signal?: AbortSignal;
  readonly progress?: (message: string) => void;
}

/** What the uploads of one push sent. */
export interface UploadStats {
  /** Blob bytes the registry accepted. */
  uploadedBytes: number;
  /** Upload sessions started again from byte 0 after an interruption the registry could not resume. */
  restarts: number;
  /** Chunks sent again from where the registry said it had got to. */
  resumes: number;
}

/** An upload session: where the next request goes (the registry moves it with every answer). */
interface Session {
  location: URL;
  /** The smallest chunk the registry takes, when it says (OCI-Chunk-Min-Length). */
  readonly minChunk: number;
}

/** The session is gone or unusable: start a new one from byte 0. */
class Restart extends Error {
  constructor(
    readonly why: string,
    readonly waitMs?: number,
  ) {
    super(why);
  }
}

/**
 * Puts one blob into a repository the cheapest way the registry allows
 * (distribution spec, "Pushing blobs"):
 * 1. HEAD: the repository has it already: nothing to send.
 * 2. A cross-repository mount, when this host has seen the blob in another
 *    repository of the same registry (BlobLocations): 201 means mounted. A
 *    202 means the registry did not mount (it does not have it there, or
 *    will not share it) and has opened an upload session instead, which is
 *    used. A refusal of the token for the source repository falls back to
 *    a plain upload.
 * 3. An upload: one PUT for a blob up to `chunkBytes`, else PATCHes of
 *    `chunkBytes` with Content-Range, then the closing PUT with the digest.
 *
 * An interrupted chunk (a reset, a 5xx, a 429 honoured with its
 * Retry-After) is resumed from the offset the registry reports for the
 * session; when it cannot report one (the session is gone, or a partial
 * write made it unusable, as distribution does) the upload starts again
 * from byte 0 in a new session. The registry checks the digest at the
 * closing PUT, so a blob is either whole in the repository or not there.
 */
export class BlobUploader {
  readonly stats: UploadStats = { uploadedBytes: 0, restarts: 0, resumes: 0 };

  constructor(
    private readonly client: RegistryClient,
    private readonly ref: ImageReference,
    private readonly opts: BlobUploadOptions,
  ) {}

  async put(blob: LocalBlob): Promise<BlobOutcome> {
    const d = blob.descriptor;
    const subject = `${this.ref.registry}/${this.ref.repository}@${d.digest}`;
    const head = await this.client.request(this.ref, "HEAD", `blobs/${d.digest}`, subject, {}, { access: "push" });
    discard(head);
    if (head.status === 200) {
      await this.remember(d.digest);
      return "existing";
    }
    if (head.status !== 404) throw await uploadError(head, subject, "checking for");
    let session: Session | undefined;
    const from = await this.mountSource(d.digest);
    if (from !== undefined) {
      const mounted = await this.mount(d.digest, from, subject);
      if (mounted === "mounted") {
        await this.remember(d.digest);
        return "mounted";
      }
      session = mounted;
    }
    await this.upload(blob, subject, session);
    await this.remember(d.digest);
    return "uploaded";
  }

  /** The repository to mount from: the last one this host saw the blob in on this registry, other than the target. */
  private async mountSource(digest: string): Promise<string | undefined> {
    const known = await this.client.locations.repositories(this.ref.registry, digest).catch(() => []);
    return known.filter((r) => r !== this.ref.repository).at(-1);
  }

  private async remember(digest: string): Promise<void> {
    await this.client.locations.record(this.ref.registry, this.ref.repository, digest).catch(() => undefined);
  }

  /** A mount request: "mounted", or the upload session the registry opened instead (a 202). */
  private async mount(digest: string, from: string, subject: string): Promise<"mounted" | Session | undefined> {
    const path = `blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`;
    let res: HttpResponse;
    try {
      res = await this.client.request(this.ref, "POST", path, subject, {}, { access: "push", mountFrom: from, body: Buffer.alloc(0) });
    } catch (e) {
      // The credentials may push here but not pull there: upload instead.
      if (isA3sError(e, "EAUTH")) {
        this.opts.progress?.(`${digest.slice(0, 19)}: not allowed to mount it from ${from}; uploading it`);
        return undefined;
      }
      throw e;
    }
    if (res.status === 201) {
      discard(res);
      this.opts.progress?.(`${digest.slice(0, 19)}: mounted from ${from}`);
      return "mounted";
    }
    if (res.status === 202) {
      discard(res);
      return sessionFrom(res, subject);
    }
    // A registry that does not take mounts at all answers otherwise: upload.
    discard(res);
    return undefined;
  }

  private async upload(blob: LocalBlob, subject: string, given: Session | undefined): Promise<void> {
    const policy = this.client.retryPolicy;
    let session = given;
    for (let attempt = 1; ; attempt++) {
      this.opts.signal?.throwIfAborted();
      session ??= await this.startSession(subject);
      try {
        const size = blob.descriptor.size;
        const chunk = Math.max(this.opts.chunkBytes, session.minChunk);
        if (size <= chunk) await this.putWhole(blob, session, subject);
        else await this.putChunks(blob, session, chunk, subject);
        return;
      } catch (e) {
        if (!(e instanceof Restart)) throw e;
        if (attempt >= policy.attempts) {
          throw new A3sError("EREGISTRY", `uploading ${subject} failed ${attempt} times: ${e.why}`, {
            subject,
            hint: "the network or the registry is unreliable; push again (what was uploaded whole is not sent again)",
          });
        }
        this.stats.restarts++;
        this.opts.progress?.(`${blob.descriptor.digest.slice(0, 19)}: ${e.why}; uploading it again`);
        session = undefined;
        await sleep(e.waitMs ?? backoffDelay(attempt, policy));
      }
    }
  }

  private async startSession(subject: string): Promise<Session> {
    const res = await this.client.request(this.ref, "POST", "blobs/uploads/", subject, {}, { access: "push", body: Buffer.alloc(0) });
    if (res.status !== 202) throw await uploadError(res, subject, "starting the upload of");
    discard(res);
    return sessionFrom(res, subject);
  }

  /** The whole blob in the closing PUT. Any failure means a new session: what the registry kept of it is unknown. */
  private async putWhole(blob: LocalBlob, session: Session, subject: string): Promise<void> {
    const size = blob.descriptor.size;
    const res = await this.send("PUT", closingUrl(session.location, blob.descriptor.digest), subject, {
      length: size,
      open: () => openLocalBlobRange(blob, 0, size),
    });
    if (res.status === 201) {
      discard(res);
      this.stats.uploadedBytes += size;
      return;
    }
    throw await this.failure(res, subject);
  }

  /** PATCHes of `chunk` bytes, resumed from the registry's offset after an interruption, then the closing PUT. */
  private async putChunks(blob: LocalBlob, session: Session, chunk: number, subject: string): Promise<void> {
    const policy = this.client.retryPolicy;
    const size = blob.descriptor.size;
    let offset = 0;
    let failures = 0;
    while (offset < size) {
      this.opts.signal?.throwIfAborted();
      const end = Math.min(size, offset + chunk);
      const from = offset;
      let res: HttpResponse | undefined;
      try {
        res = await this.send(
          "PATCH",
          session.location,
          subject,
          { length: end - from, open: () => openLocalBlobRange(blob, from, end) },
          { "content-range": `${from}-${end - 1}`, "content-type": "application/octet-stream" },
        );
      } catch (e) {
        if (!(e instanceof Restart)) throw e;
        res = undefined;
      }
      if (res?.status === 202) {
        discard(res);
        this.stats.uploadedBytes += end - from;
        session.location = locationOf(res, subject) ?? session.location;
        offset = rangeEnd(res) ?? end;
        failures = 0;
        continue;
      }
      // The chunk did not go through: ask the session how much it holds, and go on from there.
      let wait: number | undefined;
      if (res) {
        const failure = await this.failure(res, subject);
        if (!(failure instanceof Restart) || res.status === 404) throw failure;
        wait = failure.waitMs;
      }
      if (++failures >= policy.attempts) throw new Restart(`the chunk at byte ${from} failed ${failures} times`);
      await sleep(wait ?? backoffDelay(failures, policy));
      offset = await this.resumeOffset(session, subject);
      if (offset > size) throw new Restart(`the registry says it holds ${offset} bytes of a ${size}-byte blob`);
      this.stats.resumes++;
    }
    const close = await this.send("PUT", closingUrl(session.location, blob.descriptor.digest), subject, Buffer.alloc(0));
    if (close.status === 201) {
      discard(close);
      return;
    }
    throw await this.failure(close, subject);
  }

  /** How many bytes the session holds (GET on it: 204 with Range 0-N); a session it cannot report on is restarted. */
  private async resumeOffset(session: Session, subject: string): Promise<number> {
    let res: HttpResponse;
    try {
      res = await this.client.request(this.ref, "GET", "", subject, {}, { access: "push", url: session.location });
    } catch (e) {
      if (isA3sError(e, "EAUTH")) throw e;
      throw new Restart(`the upload's state could not be read (${(e as Error).message})`);
    }
    discard(res);
    if (res.status !== 204) throw new Restart(`the registry cannot resume the upload (it answered ${res.status} when asked how much it has)`);
    session.location = locationOf(res, subject) ?? session.location;
    // "0-0" is what distribution says for an empty session as well as for one byte: take it as empty,
    // and a wrong guess costs one refused chunk (416) and another look.
    const range = (headerOf(res, "range") ?? "").trim();
    return range === "0-0" || range === "bytes=0-0" ? 0 : (rangeEnd(res) ?? 0);
  }

  /**
   * One request that carries blob data: sent once, its failure statuses
   * returned. A network failure becomes a Restart for the caller to judge.
   */
  private async send(
    method: "PUT" | "PATCH",
    url: URL,
    subject: string,
    body: Buffer | { length: number; open: () => NodeJS.ReadableStream },
    headers: Record<string, string> = { "content-type": "application/octet-stream" },
  ): Promise<HttpResponse> {
    try {
      return await this.client.request(this.ref, method, "", subject, headers, { access: "push", url, body, retry: false });
    } catch (e) {
      if (isRetriableNetworkError(e)) throw new Restart(`the connection broke (${(e as Error).message})`);
      throw e;
    }
  }

  /** What a failed upload answer means: a Restart (try again, after Retry-After when given) or the user's error. */
  private async failure(res: HttpResponse, subject: string): Promise<Restart | A3sError> {
    if (isRetriableStatus(res.status) || res.status === 416 || res.status === 404) {
      discard(res);
      const wait = parseRetryAfter(headerOf(res, "retry-after"));
      const capped = wait === undefined ? undefined : Math.min(wait, this.client.retryPolicy.maxRetryAfterMs);
      return new Restart(`the registry answered ${res.status}`, capped);
    }
    const error = await uploadError(res, subject, "uploading");
    // A digest the registry does not get from our bytes, or a session it says is broken: start again, the bytes are re-read.
    if (res.status === 400 && /BLOB_UPLOAD_INVALID|BLOB_UPLOAD_UNKNOWN/.test(error.message)) return new Restart(error.message);
    return error;
  }
}

function headerOf(res: HttpResponse, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function locationOf(res: HttpResponse, subject: string): URL | undefined {
  const location = headerOf(res, "location");
  if (location === undefined) return undefined;
  try {
    return new URL(location, res.url);
  } catch {
    throw new A3sError("EREGISTRY", `${subject}: the registry gave an invalid upload location ${JSON.stringify(location.slice(0, 200))}`, { subject });
  }
}

function sessionFrom(res: HttpResponse, subject: string): Session {
  const location = locationOf(res, subject);
  if (!location) throw new A3sError("EREGISTRY", `${subject}: the registry opened an upload without saying where (no Location)`, { subject });
  const min = Number(headerOf(res, "oci-chunk-min-length"));
  return { location, minChunk: Number.isSafeInteger(min) && min > 0 ? min : 0 };
}

/** The end of what the session holds, from a Range header "0-N" (bytes 0..N inclusive): N + 1. */
function rangeEnd(res: HttpResponse): number | undefined {
  const m = /^(?:bytes=)?0-(\d+)$/.exec((headerOf(res, "range") ?? "").trim());
  return m ? Number(m[1]) + 1 : undefined;
}

/** The session's location with ?digest=D added (its own parameters, such as distribution's _state, kept). */
function closingUrl(location: URL, digest: string): URL {
  const url = new URL(location);
  url.searchParams.set("digest", digest);
  return url;
}

async function uploadError(res: HttpResponse, subject: string, doing: string): Promise<A3sError> {
  const detail = await registryMessage(res);
  if (res.status === 403) {
    return new A3sError("EAUTH", `${doing} ${subject}: access denied${detail}`, { subject, hint: "these credentials may not push to this repository" });
  }
  return new A3sError("EREGISTRY", `${doing} ${subject}: the registry answered ${res.status}${detail}`, {
    subject,
    hint: "check the reference and that the registry accepts pushes to it",
  });
}
