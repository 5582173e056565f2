import http, { type IncomingHttpHeaders, type IncomingMessage } from "node:http";
import https from "node:https";
import { A3sError } from "../../errors.js";
import { isLoopbackRegistry } from "../reference.js";

/** A response whose body has not been read yet. */
export interface HttpResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: IncomingMessage;
  /** The URL that answered, after redirects. */
  readonly url: URL;
}

/** A request body read from somewhere each time it is sent (a blob being uploaded), so a retry can send it again. */
export interface BodySource {
  /** Exactly how many bytes `open` gives (the Content-Length). */
  readonly length: number;
  open(): NodeJS.ReadableStream;
}

export type HttpMethod = "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE";

export interface HttpRequestOptions {
  readonly method: HttpMethod;
  /**
   * The request body: a small one in memory (a token request's form, a
   * manifest), or a source streamed from disk (a blob upload). Requests
   * with a body never follow redirects.
   */
  readonly body?: string | Buffer | BodySource;
  readonly headers?: Readonly<Record<string, string>>;
  /**
   * Sent only to the origin of the first URL. Blob redirects usually point at
   * a CDN or object store; forwarding the registry's credentials there would
   * hand them to a third party (the credential leak of CVE-2018-1000007 and
   * its many cousins).
   */
  readonly authorization?: string;
  /** Plain http:// is allowed to these hosts too (the user's --insecure). */
  readonly insecure?: boolean;
  readonly timeoutMs?: number;
  readonly maxRedirects?: number;
}

const USER_AGENT = "a3s-rootfs";
const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_REDIRECTS = 5;

// Keep-alive saves a TCP and TLS handshake on each of the many small requests of a pull.
const httpAgent = new http.Agent({ keepAlive: true });
const httpsAgent = new https.Agent({ keepAlive: true });
const insecureHttpsAgent = new https.Agent({ keepAlive: true, rejectUnauthorized: false });

/** True when plain HTTP may be used to reach `url`'s host. */
export function plainHttpAllowed(url: URL, insecure: boolean): boolean {
  return insecure || isLoopbackRegistry(url.host);
}

/**
 * One HTTP request, following redirects. Status codes are returned, never
 * thrown: the caller decides what a 401 or 429 means. Network errors are
 * thrown as they are (their `code` says whether a retry may help).
 */
export async function httpRequest(url: URL, opts: HttpRequestOptions): Promise<HttpResponse> {
  const maxRedirects = opts.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
  const origin = url.origin;
  let current = url;
  for (let hop = 0; ; hop++) {
    if (current.protocol !== "https:" && current.protocol !== "http:") {
      throw new A3sError("EREGISTRY", `refusing to follow a redirect to ${current.protocol} URL ${redact(current)}`, { subject: redact(current) });
    }
    // A redirect from https to http (or any http to a remote host) would expose the
    // content (and a manifest's digests) to anyone on the path.
    if (current.protocol === "http:" && !plainHttpAllowed(current, opts.insecure ?? false)) {
      throw new A3sError("EINSECURE", `refusing plain HTTP to ${current.host}: only loopback registries may use HTTP`, {
        subject: redact(current),
        hint: "pass --insecure if this registry really has no TLS",
      });
    }
    const headers: Record<string, string> = { "user-agent": USER_AGENT, ...opts.headers };
    if (opts.authorization !== undefined && current.origin === origin) headers.authorization = opts.authorization;
    const res = await sendOnce(current, opts.method, headers, opts);
    const location = res.headers.location;
    if (![301, 302, 303, 307, 308].includes(res.statusCode ?? 0) || location === undefined || opts.body !== undefined) {
      return { status: res.statusCode ?? 0, headers: res.headers, body: res, url: current };
    }
    res.resume();
    if (hop >= maxRedirects) {
      throw new A3sError("EREGISTRY", `too many redirects fetching ${redact(url)}`, { subject: redact(url) });
    }
    current = new URL(location, current);
  }
}

function sendOnce(url: URL, method: string, headers: Record<string, string>, opts: HttpRequestOptions): Promise<IncomingMessage> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    const isHttps = url.protocol === "https:";
    const agent = isHttps ? (opts.insecure ? insecureHttpsAgent : httpsAgent) : httpAgent;
    const req = (isHttps ? https : http).request(url, { method, headers, agent }, resolve);
    // An idle socket (a stalled registry) is an error after timeoutMs, during
    // the headers and during the body: a pull must never hang forever.
    req.setTimeout(timeoutMs, () => {
      const err = Object.assign(new Error(`no data from ${url.host} for ${timeoutMs} ms`), { code: "ETIMEDOUT" });
      req.destroy(err);
    });
    req.on("error", reject);
    const body = opts.body;
    if (body === undefined) {
      req.end();
    } else if (typeof body === "string" || Buffer.isBuffer(body)) {
      req.setHeader("content-length", Buffer.byteLength(body));
      req.end(body);
    } else {
      req.setHeader("content-length", body.length);
      const source = body.open();
      // A source that fails (the file went away) fails the request, not the process.
      source.once("error", (e) => req.destroy(e as Error));
      source.pipe(req);
    }
  });
}

/** A URL fit for a message: no query string (signed CDN URLs carry credentials there). */
export function redact(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

/**
 * Reads a whole (small) body, refusing more than `maxBytes`: a hostile
 * server must not be able to fill our memory with a "manifest".
 */
export async function readBody(res: HttpResponse, maxBytes: number, subject: string): Promise<Buffer> {
  const declared = Number(res.headers["content-length"]);
  if (Number.isFinite(declared) && declared > maxBytes) {
    res.body.destroy();
    throw new A3sError("ESIZE", `${subject}: the response is ${declared} bytes, more than the ${maxBytes} allowed`, { subject });
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res.body) {
    total += (chunk as Buffer).length;
    if (total > maxBytes) {
      res.body.destroy();
      throw new A3sError("ESIZE", `${subject}: the response is more than the ${maxBytes} bytes allowed`, { subject });
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Discards a body we will not use, so its keep-alive socket can be reused. */
export function discard(res: HttpResponse): void {
  res.body.resume();
}

/** Most of a registry's error body a message is read from. */
const MAX_ERROR_BODY = 64 * 1024;

/**
 * The registry's own words for a failed request, from the distribution
 * spec's error body ({"errors": [{code, message}]}), for the user:
 * " (CODE: message)", or "" when the body says nothing readable.
 */
export async function registryMessage(res: HttpResponse): Promise<string> {
  try {
    const body = await readBody(res, MAX_ERROR_BODY, "error body");
    const doc = JSON.parse(body.toString("utf8")) as { errors?: { code?: unknown; message?: unknown }[] };
    const first = doc.errors?.[0];
    if (first && typeof first.message === "string") return ` (${typeof first.code === "string" ? `${first.code}: ` : ""}${first.message.slice(0, 200)})`;
  } catch {
    res.body.destroy();
  }
  return "";
}
