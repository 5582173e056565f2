import { execFileSync } from "node:child_process";
import { randomBytes, sign } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * A small real token server (the distribution token spec) on loopback: it
 * answers GET /token?service=…&scope=… with a JWT signed by a key whose
 * self-signed certificate the registry trusts (rootcertbundle). Anonymous
 * callers get pull on public repositories; users with the right password get
 * pull and push everywhere.
 */
export interface TokenServer {
  readonly realm: string;
  readonly service: string;
  readonly issuer: string;
  readonly certPath: string;
  /** Every token request: who asked (undefined: anonymous), for which scopes, and the answer. */
  readonly requests: { user: string | undefined; scopes: string[]; status: number; method: string }[];
  stop(): Promise<void>;
}

export interface TokenServerOptions {
  readonly users: Readonly<Record<string, string>>;
  /** Repositories anyone may pull. */
  readonly publicRepos?: (repo: string) => boolean;
  /** Lifetime of tokens in seconds (expires_in). */
  readonly lifetimeS?: number;
  /** Identity (refresh) tokens accepted from a POST grant_type=refresh_token, by token → user. */
  readonly refreshTokens?: Readonly<Record<string, string>>;
}

export async function startTokenServer(opts: TokenServerOptions): Promise<TokenServer> {
  const work = mkdtempSync(join(tmpdir(), "a3s-token-"));
  const keyPath = join(work, "key.pem");
  const certPath = join(work, "cert.pem");
  execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", keyPath, "-out", certPath, "-days", "2", "-subj", "/CN=a3s-test-token"], {
    stdio: "ignore",
  });
  const key = readFileSync(keyPath);
  const certDer = readFileSync(certPath, "utf8").replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
  const service = "a3s-test-registry";
  const issuer = "a3s-test-issuer";
  const requests: TokenServer["requests"] = [];
  const lifetime = opts.lifetimeS ?? 300;

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://localhost");
      let params = url.searchParams;
      let user: string | undefined;
      let refused = false;
      if (req.method === "POST") {
        params = new URLSearchParams(Buffer.concat(chunks).toString());
        const rt = params.get("refresh_token");
        user = rt ? opts.refreshTokens?.[rt] : undefined;
        refused = params.get("grant_type") !== "refresh_token" || user === undefined;
      } else {
        const auth = req.headers.authorization;
        if (auth?.startsWith("Basic ")) {
          const [u, ...p] = Buffer.from(auth.slice(6), "base64").toString().split(":");
          if (u !== undefined && opts.users[u] === p.join(":")) user = u;
          else refused = true;
        }
      }
      const scopes = params.getAll("scope").flatMap((s) => s.split(" ")).filter(Boolean);
      if (refused || url.pathname !== "/token") {
        requests.push({ user, scopes, status: 401, method: req.method ?? "" });
        res.writeHead(401, { "content-type": "application/json" }).end(JSON.stringify({ details: "bad credentials" }));
        return;
      }
      const access = scopes.flatMap((scope) => {
        const m = /^repository:([^:]+):(.+)$/.exec(scope);
        if (!m) return [];
        const repo = m[1]!;
        const wanted = m[2]!.split(",");
        const allowed = user !== undefined ? wanted : opts.publicRepos?.(repo) ? wanted.filter((a) => a === "pull") : [];
        return allowed.length ? [{ type: "repository", name: repo, actions: allowed }] : [];
      });
      const now = Math.floor(Date.now() / 1000);
      const token = jwt(key, certDer, { iss: issuer, sub: user ?? "", aud: service, exp: now + lifetime, nbf: now - 10, iat: now, jti: randomBytes(8).toString("hex"), access });
      requests.push({ user, scopes, status: 200, method: req.method ?? "" });
      res.writeHead(200, { "content-type": "application/json" }).end(
        JSON.stringify({ token, access_token: token, expires_in: lifetime, issued_at: new Date(now * 1000).toISOString() }),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    certPath,
    requests,
    stop: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      rmSync(work, { recursive: true, force: true });
    },
  };
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString("base64url");
}

/** A compact JWS with RS256 and the signing certificate in x5c, as distribution verifies it. */
function jwt(key: Buffer, certDerBase64: string, claims: object): string {
  const header = b64url(JSON.stringify({ typ: "JWT", alg: "RS256", x5c: [certDerBase64] }));
  const body = b64url(JSON.stringify(claims));
  const signature = sign("sha256", Buffer.from(`${header}.${body}`), key);
  return `${header}.${body}.${b64url(signature)}`;
}
