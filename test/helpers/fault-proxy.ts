import http, { type IncomingMessage, type Server, type ServerResponse } from "node:http";

/**
 * A reverse proxy on loopback in front of a real registry that injects the
 * failures a pull meets in the wild. Each fault fires a bounded number of
 * times, so a correct client gets through in the end.
 */
export interface Faults {
  /** GET blob responses (not resumed ones) are cut after this fraction of the body, `times` times. */
  cutBlobs?: { fraction: number; times: number };
  /** Matching requests (of `method`, when given) are answered with `status` (and Retry-After when given), `times` times. */
  throttle?: { status: number; retryAfter?: string; times: number; match?: RegExp; method?: string };
  /** Upload bodies (PUT or PATCH of /blobs/uploads/, of `method` when given) are cut after `afterBytes` reach the registry, `times` times. */
  cutUploads?: { afterBytes: number; times: number; method?: string };
  /** Upload bodies (PUT or PATCH to /blobs/uploads/) are held this long before they are forwarded. */
  delayUploadsMs?: number;
  /** A bearer token is refused (401, error="invalid_token") once it has been used this many times. */
  expireTokensAfter?: number;
  /** One byte of matching response bodies is flipped, `times` times: the last, or the one at fraction `at` of the body. */
  corrupt?: { match: RegExp; times: number; at?: number };
  /** The Content-Type of matching responses is replaced. */
  contentType?: { match: RegExp; value: string };
  /** Matching requests get this response instead of the registry's. */
  replace?: { match: RegExp; status: number; headers: Record<string, string>; body: Buffer };
  /** Blob GETs are redirected (307) to this origin, path /blobs/DIGEST?sig=… */
  redirectBlobsTo?: string;
  /** Range headers are dropped, so resumed requests get the whole body (200). */
  ignoreRange?: boolean;
  /** Blob GETs are held this long before they are forwarded (to make downloads overlap). */
  delayBlobsMs?: number;
}

export interface ProxyLogEntry {
  readonly method: string;
  readonly path: string;
  readonly status: number;
  readonly authorization?: string;
  readonly range?: string;
}

export interface FaultProxy {
  readonly host: string;
  readonly url: string;
  faults: Faults;
  readonly log: ProxyLogEntry[];
  /** The most blob GETs that were in flight at once. */
  readonly maxConcurrentBlobs: number;
  stop(): Promise<void>;
}

export async function startFaultProxy(upstream: string, faults: Faults = {}, listen = "127.0.0.1"): Promise<FaultProxy> {
  const log: ProxyLogEntry[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const tokenUses = new Map<string, number>();
  let lastChallenge: string | undefined;
  const proxy: { faults: Faults } = { faults };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const f = proxy.faults;
    const path = req.url ?? "/";
    const auth = req.headers.authorization;
    const record = (status: number): void => {
      log.push({ method: req.method ?? "", path, status, ...(auth ? { authorization: auth } : {}), ...(req.headers.range ? { range: req.headers.range } : {}) });
    };
    const isBlobGet = req.method === "GET" && /\/blobs\/sha256:/.test(path);
    const seen = req as { counted?: boolean; delayed?: boolean };
    if (isBlobGet && !seen.counted) {
      seen.counted = true;
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      res.once("close", () => inFlight--);
    }
    if (isBlobGet && f.delayBlobsMs && !seen.delayed) {
      seen.delayed = true;
      setTimeout(() => handle(req, res), f.delayBlobsMs);
      return;
    }
    if (f.replace && f.replace.match.test(path)) {
      record(f.replace.status);
      res.writeHead(f.replace.status, { ...f.replace.headers, "content-length": String(f.replace.body.length) });
      res.end(req.method === "HEAD" ? undefined : f.replace.body);
      return;
    }
    const isUpload = (req.method === "PUT" || req.method === "PATCH") && /\/blobs\/uploads\//.test(path);
    if (isUpload && f.delayUploadsMs && !seen.delayed) {
      seen.delayed = true;
      req.pause();
      setTimeout(() => handle(req, res), f.delayUploadsMs);
      return;
    }
    if (f.throttle && f.throttle.times > 0 && (f.throttle.match ?? /./).test(path) && (f.throttle.method === undefined || f.throttle.method === req.method)) {
      f.throttle.times--;
      record(f.throttle.status);
      res.writeHead(f.throttle.status, f.throttle.retryAfter ? { "retry-after": f.throttle.retryAfter } : {});
      res.end();
      return;
    }
    if (auth?.startsWith("Bearer ") && f.expireTokensAfter !== undefined) {
      const uses = (tokenUses.get(auth) ?? 0) + 1;
      tokenUses.set(auth, uses);
      if (uses > f.expireTokensAfter && lastChallenge) {
        record(401);
        res.writeHead(401, { "www-authenticate": `${lastChallenge},error="invalid_token"`, "content-type": "application/json" });
        res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "token expired" }] }));
        return;
      }
    }
    if (isBlobGet && f.redirectBlobsTo) {
      const digest = /\/blobs\/(sha256:[0-9a-f]+)/.exec(path)![1]!;
      record(307);
      res.writeHead(307, { location: `${f.redirectBlobsTo}/blobs/${digest}?sig=secret-signature` });
      res.end();
      return;
    }

    const headers = { ...req.headers };
    // The registry builds the upload Locations it hands out from this, so they come back through the proxy.
    headers["x-forwarded-host"] = req.headers.host ?? "";
    delete headers.host;
    if (f.ignoreRange) delete headers.range;
    const target = new URL(path, upstream);
    const up = http.request(target, { method: req.method, headers }, (upRes) => {
      const status = upRes.statusCode ?? 502;
      record(status);
      if (status === 401 && typeof upRes.headers["www-authenticate"] === "string") lastChallenge = upRes.headers["www-authenticate"];
      const outHeaders = { ...upRes.headers };
      if (f.contentType && f.contentType.match.test(path)) outHeaders["content-type"] = f.contentType.value;
      const corrupt = f.corrupt && f.corrupt.times > 0 && f.corrupt.match.test(path) && req.method === "GET" && status === 200;
      const cut = isBlobGet && status === 200 && !req.headers.range && f.cutBlobs && f.cutBlobs.times > 0;
      if (corrupt) {
        f.corrupt!.times--;
        const chunks: Buffer[] = [];
        upRes.on("data", (c: Buffer) => chunks.push(c));
        upRes.on("end", () => {
          const body = Buffer.concat(chunks);
          const at = f.corrupt?.at === undefined ? body.length - 1 : Math.floor(body.length * f.corrupt.at);
          if (body.length > 0) body[at] = body[at]! ^ 0xff;
          res.writeHead(status, outHeaders);
          res.end(body);
        });
        return;
      }
      if (cut) {
        f.cutBlobs!.times--;
        const total = Number(upRes.headers["content-length"]);
        const limit = Math.floor(total * f.cutBlobs!.fraction);
        let sent = 0;
        res.writeHead(status, outHeaders);
        upRes.on("data", (c: Buffer) => {
          if (sent >= limit) return;
          const part = c.subarray(0, limit - sent);
          sent += part.length;
          res.write(part);
          if (sent >= limit) {
            // Flush what we sent, then drop the connection mid-body.
            res.socket?.end(() => res.socket?.destroy());
            upRes.destroy();
          }
        });
        return;
      }
      res.writeHead(status, outHeaders);
      upRes.pipe(res);
    });
    up.on("error", () => {
      record(502);
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    const cutUpload = isUpload && f.cutUploads && f.cutUploads.times > 0 && (f.cutUploads.method === undefined || f.cutUploads.method === req.method);
    if (cutUpload) {
      const limit = f.cutUploads!.afterBytes;
      let sent = 0;
      let cut = false;
      req.on("data", (c: Buffer) => {
        if (cut) return;
        if (sent + c.length < limit || f.cutUploads!.times <= 0) {
          sent += c.length;
          up.write(c);
          return;
        }
        // The registry has taken part of the body; both connections drop, as when a network fails mid-upload.
        cut = true;
        f.cutUploads!.times--;
        up.write(c.subarray(0, limit - sent));
        record(499);
        setTimeout(() => {
          up.destroy();
          req.socket.destroy();
        }, 50);
      });
      req.on("end", () => {
        if (!cut) up.end();
      });
      return;
    }
    req.pipe(up);
  };

  const server: Server = http.createServer(handle);
  await new Promise<void>((r) => server.listen(0, listen, r));
  const port = (server.address() as { port: number }).port;
  return {
    host: `${listen}:${port}`,
    url: `http://${listen}:${port}`,
    get maxConcurrentBlobs() {
      return maxInFlight;
    },
    get faults() {
      return proxy.faults;
    },
    set faults(v: Faults) {
      proxy.faults = v;
    },
    log,
    stop: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/**
 * A stand-in for the CDN a registry redirects blob downloads to: it serves
 * blobs from memory and records the headers each request carried (to prove
 * the registry's Authorization never reaches it).
 */
export interface BlobServer {
  readonly origin: string;
  readonly requests: { path: string; authorization?: string }[];
  stop(): Promise<void>;
}

export async function startBlobServer(blobs: ReadonlyMap<string, Buffer>, host = "localhost"): Promise<BlobServer> {
  const requests: BlobServer["requests"] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    requests.push({ path: url.pathname, ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) });
    const digest = url.pathname.replace(/^\/blobs\//, "");
    const blob = blobs.get(digest);
    if (!blob || url.searchParams.get("sig") !== "secret-signature") {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(blob.length) });
    res.end(blob);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return {
    origin: `http://${host}:${port}`,
    requests,
    stop: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
