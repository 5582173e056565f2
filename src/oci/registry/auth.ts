import { A3sError } from "../../errors.js";
import type { RegistryCredentials } from "./credentials.js";
import { discard, httpRequest, readBody, redact } from "./http.js";
import { backoffDelay, DEFAULT_RETRY, isRetriableNetworkError, isRetriableStatus, parseRetryAfter, sleep, type RetryPolicy } from "./retry.js";

/** One challenge of a WWW-Authenticate header: `Bearer realm="…",service="…"`. */
export interface AuthChallenge {
  /** Lower-cased: "bearer", "basic". */
  readonly scheme: string;
  readonly params: Readonly<Record<string, string>>;
}

/**
 * Parses WWW-Authenticate (RFC 7235): one or more challenges, each a scheme
 * followed by comma-separated name=value parameters, values optionally
 * quoted with backslash escapes. Commas inside quotes belong to the value
 * (a scope such as "repository:a:pull,push").
 */
export function parseChallenges(header: string | readonly string[] | undefined): AuthChallenge[] {
  if (header === undefined) return [];
  const text = typeof header === "string" ? header : header.join(", ");
  const out: { scheme: string; params: Record<string, string> }[] = [];
  let i = 0;
  const skip = (re: RegExp): void => {
    while (i < text.length && re.test(text[i]!)) i++;
  };
  const token = (): string => {
    const start = i;
    while (i < text.length && /[!#$%&'*+\-.^_`|~0-9A-Za-z]/.test(text[i]!)) i++;
    return text.slice(start, i);
  };
  while (i < text.length) {
    skip(/[\s,]/);
    const word = token();
    if (word === "") {
      i++;
      continue;
    }
    skip(/\s/);
    if (text[i] === "=" && out.length > 0) {
      // A parameter of the current challenge.
      i++;
      skip(/\s/);
      let value = "";
      if (text[i] === '"') {
        i++;
        while (i < text.length && text[i] !== '"') {
          if (text[i] === "\\" && i + 1 < text.length) i++;
          value += text[i];
          i++;
        }
        i++;
      } else {
        value = token();
      }
      out[out.length - 1]!.params[word.toLowerCase()] = value;
    } else {
      out.push({ scheme: word.toLowerCase(), params: {} });
    }
  }
  return out;
}

/** The scope a pull of `repository` needs (distribution token spec). */
export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}

/** The scope a push to `repository` needs: a push reads what it checks for (HEAD) too. */
export function pushScope(repository: string): string {
  return `repository:${repository}:pull,push`;
}

interface Token {
  readonly header: string;
  /** ms since the epoch after which the token is not used again. */
  readonly expiresAt: number;
}

/** Token responses are small; a larger one is refused rather than buffered. */
const MAX_TOKEN_RESPONSE = 1 << 20;
/** The spec's floor on a token's life when the server names none (or less). */
const MIN_TOKEN_LIFE_S = 60;
/** Renew this long before expiry, so a token does not run out between check and use. */
const EXPIRY_MARGIN_MS = 10_000;

export interface RegistryAuthOptions {
  /** host[:port] of the registry, for messages. */
  readonly registry: string;
  /** Looked up once, when the registry first asks for credentials. */
  readonly credentials: () => Promise<RegistryCredentials | undefined>;
  readonly insecure?: boolean;
  readonly retry?: RetryPolicy;
}

/**
 * Authentication to one registry: learns the scheme from the registry's 401
 * challenge and answers it with Basic credentials, or with a Bearer token
 * from the token server the challenge names (anonymous, or with credentials).
 * Tokens are kept per scope and replaced when they expire or are refused.
 */
export class RegistryAuth {
  private readonly opts: RegistryAuthOptions;
  private credentialsPromise: Promise<RegistryCredentials | undefined> | undefined;
  private basic: string | undefined;
  private bearer: { realm: string; service: string | undefined } | undefined;
  private readonly tokens = new Map<string, Token>();
  private readonly inflight = new Map<string, Promise<Token>>();
  /** How many tokens were fetched (reports and tests). */
  tokenFetches = 0;

  constructor(opts: RegistryAuthOptions) {
    this.opts = opts;
  }

  /** The Authorization header for a request in `scope`, fetching a token first when ours has expired. */
  async authorization(scope: string): Promise<string | undefined> {
    if (this.bearer) {
      const token = this.tokens.get(scope);
      if (token && Date.now() < token.expiresAt) return token.header;
      return (await this.fetchToken(scope)).header;
    }
    return this.basic;
  }

  /**
   * Answers a 401. `sent` is the Authorization the refused request carried.
   * True when a retry with a fresh header may succeed; false when there is
   * nothing better to send (no credentials, or these credentials were refused).
   */
  async challenge(header: string | readonly string[] | undefined, scope: string, sent: string | undefined): Promise<boolean> {
    const challenges = parseChallenges(header);
    const bearer = challenges.find((c) => c.scheme === "bearer" && c.params.realm);
    if (bearer) {
      this.bearer = { realm: bearer.params.realm!, service: bearer.params.service };
      const current = this.tokens.get(scope);
      // A token that was accepted but does not cover the repository will not
      // improve by asking again with the same credentials.
      if (bearer.params.error === "insufficient_scope" && current && current.header === sent) return false;
      // Another request may have renewed the token while this one was refused.
      if (current && current.header !== sent && Date.now() < current.expiresAt) return true;
      // A refused token (expired early, or revoked mid-pull) is never offered again.
      if (current && current.header === sent) this.tokens.delete(scope);
      // Concurrent refusals of one expired token share a single new token (fetchToken
      // joins a request in flight); the caller bounds how often one request may retry.
      await this.fetchToken(scope);
      return true;
    }
    if (challenges.some((c) => c.scheme === "basic")) {
      const creds = await this.credentials();
      if (!creds || !("username" in creds)) return false;
      const header = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString("base64")}`;
      if (sent === header) return false;
      this.basic = header;
      return true;
    }
    return false;
  }

  /** Whether credentials are known for this registry (for the hint of an auth error). */
  async hasCredentials(): Promise<boolean> {
    return (await this.credentials()) !== undefined;
  }

  private credentials(): Promise<RegistryCredentials | undefined> {
    this.credentialsPromise ??= this.opts.credentials();
    return this.credentialsPromise;
  }

  private fetchToken(scope: string): Promise<Token> {
    let p = this.inflight.get(scope);
    if (!p) {
      p = this.requestToken(scope).finally(() => this.inflight.delete(scope));
      this.inflight.set(scope, p);
    }
    return p;
  }

  private async requestToken(scope: string): Promise<Token> {
    const url = this.realmUrl(scope);
    const creds = await this.credentials();
    const { authorization, form } = tokenAuth(creds, scope, this.bearer!.service);
    const policy = this.opts.retry ?? DEFAULT_RETRY;
    for (let attempt = 1; ; attempt++) {
      let res;
      try {
        res = await httpRequest(url, {
          method: form === undefined ? "GET" : "POST",
          authorization,
          insecure: this.opts.insecure ?? false,
          headers: form === undefined ? { accept: "application/json" } : { accept: "application/json", "content-type": "application/x-www-form-urlencoded" },
          ...(form === undefined ? {} : { body: form }),
        });
      } catch (e) {
        if (attempt < policy.attempts && isRetriableNetworkError(e)) {
          await sleep(backoffDelay(attempt, policy));
          continue;
        }
        throw new A3sError("EAUTH", `cannot reach the token server ${redact(url)} for ${this.opts.registry}: ${(e as Error).message}`, {
          subject: redact(url),
          cause: e,
        });
      }
      if (isRetriableStatus(res.status) && attempt < policy.attempts) {
        discard(res);
        const after = parseRetryAfter(res.headers["retry-after"] as string | undefined);
        await sleep(Math.min(after ?? backoffDelay(attempt, policy), policy.maxRetryAfterMs));
        continue;
      }
      if (res.status !== 200) {
        discard(res);
        const refused = res.status === 401 || res.status === 403;
        throw new A3sError(
          "EAUTH",
          `the token server ${redact(url)} ${refused ? "refused" : `answered ${res.status} to`} ${creds ? "our credentials" : "an anonymous request"} for ${scope}`,
          {
            subject: this.opts.registry,
            hint: creds ? "check the user and password (--creds USER:PASSWORD or docker login)" : `log in first: --creds USER:PASSWORD or docker login ${this.opts.registry}`,
          },
        );
      }
      const token = tokenFromResponse(await readBody(res, MAX_TOKEN_RESPONSE, `token response from ${redact(url)}`), url);
      this.tokens.set(scope, token);
      this.tokenFetches++;
      return token;
    }
  }

  /** The token realm the registry named, checked, with the service and `scope` in its query. */
  private realmUrl(scope: string): URL {
    const { realm, service } = this.bearer!;
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new A3sError("EAUTH", `${this.opts.registry} names an invalid token realm ${JSON.stringify(realm)}`, { subject: realm });
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      throw new A3sError("EAUTH", `${this.opts.registry} names a token realm that is not http(s): ${realm}`, { subject: realm });
    }
    if (service) url.searchParams.set("service", service);
    // Several scopes (a push that mounts from another repository) go as one
    // parameter each, as the token spec and Docker Hub's auth server want.
    for (const one of scope.split(" ").filter(Boolean)) url.searchParams.append("scope", one);
    return url;
  }
}

/**
 * How a token request authenticates: a user and password as Basic
 * authorization, an identity token as an OAuth2 refresh in a POST body,
 * nothing for an anonymous pull.
 */
function tokenAuth(creds: RegistryCredentials | undefined, scope: string, service: string | undefined): { authorization?: string; form?: string } {
  if (creds && "username" in creds) {
    return { authorization: `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString("base64")}` };
  }
  if (creds && "identityToken" in creds) {
    // docker login's identity token is an OAuth2 refresh token: exchanged in a
    // POST body, never in the query string where proxies and logs would keep it.
    const params = new URLSearchParams({ grant_type: "refresh_token", refresh_token: creds.identityToken, client_id: "a3s-rootfs", scope });
    if (service) params.set("service", service);
    return { form: params.toString() };
  }
  return {};
}

/** The token and its life from a token server's JSON answer ("token" or OAuth2's "access_token"). */
function tokenFromResponse(body: Buffer, url: URL): Token {
  let doc: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown };
  try {
    doc = JSON.parse(body.toString("utf8")) as typeof doc;
  } catch {
    throw new A3sError("EAUTH", `the token server ${redact(url)} answered with something that is not JSON`, { subject: redact(url) });
  }
  const value = typeof doc.token === "string" && doc.token ? doc.token : typeof doc.access_token === "string" ? doc.access_token : "";
  if (value === "" || /[\r\n]/.test(value)) {
    throw new A3sError("EAUTH", `the token server ${redact(url)} answered without a token`, { subject: redact(url) });
  }
  const life = typeof doc.expires_in === "number" && doc.expires_in >= MIN_TOKEN_LIFE_S ? doc.expires_in : MIN_TOKEN_LIFE_S;
  const issued = typeof doc.issued_at === "string" ? Date.parse(doc.issued_at) : NaN;
  // Our own clock decides, unless the server's issue time is earlier (a skewed server
  // clock in the future must not stretch the token's life).
  const start = Number.isNaN(issued) ? Date.now() : Math.min(issued, Date.now());
  return { header: `Bearer ${value}`, expiresAt: start + life * 1000 - EXPIRY_MARGIN_MS };
}

