import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { dieWithParent } from "../../src/boot/die-with-parent.js";
import { parseChallenges } from "../../src/oci/registry/auth.js";
import type { TestBlob, TestImage } from "./test-image.js";

/** Debian's docker-registry (distribution 2.8), started by a test on loopback. */
export interface TestRegistry {
  /** host:port, as a reference names it. */
  readonly host: string;
  readonly url: string;
  /** The storage directory (other registries may serve the same one). */
  readonly storage: string;
  stop(): Promise<void>;
}

export interface RegistryAuthConfig {
  /** Basic auth with these users (bcrypt htpasswd made by apache2-utils' htpasswd). */
  readonly htpasswd?: Readonly<Record<string, string>>;
  /** Bearer tokens from a token server whose certificate signs them. */
  readonly token?: { readonly realm: string; readonly service: string; readonly issuer: string; readonly certPath: string };
}

export const REGISTRY_BINARY = "/usr/bin/docker-registry";

/** A free TCP port on loopback (bound and released; the registry takes it right after). */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, host, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Starts docker-registry on a free port of `listen` (127.0.0.1 by default)
 * with filesystem storage in a temporary directory (or `storage`, to serve
 * what another instance holds), and waits until it answers /v2/.
 */
export async function startRegistry(
  opts: { storage?: string; auth?: RegistryAuthConfig; listen?: string; tls?: { certPath: string; keyPath: string } } = {},
): Promise<TestRegistry> {
  const work = mkdtempSync(join(tmpdir(), "a3s-registry-"));
  const storage = opts.storage ?? join(work, "data");
  mkdirSync(storage, { recursive: true });
  const listen = opts.listen ?? "127.0.0.1";
  const port = await freePort(listen);
  const lines = [
    "version: 0.1",
    "log:",
    "  level: error",
    "  accesslog:",
    "    disabled: true",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${storage}`,
    "  delete:",
    "    enabled: true",
    "http:",
    `  addr: ${listen}:${port}`,
  ];
  if (opts.tls) lines.push("  tls:", `    certificate: ${opts.tls.certPath}`, `    key: ${opts.tls.keyPath}`);
  if (opts.auth?.htpasswd) {
    const file = join(work, "htpasswd");
    const entries = Object.entries(opts.auth.htpasswd).map(([user, pass]) => execFileSync("htpasswd", ["-Bbn", user, pass]).toString().trim());
    writeFileSync(file, entries.join("\n") + "\n");
    lines.push("auth:", "  htpasswd:", "    realm: a3s-test", `    path: ${file}`);
  } else if (opts.auth?.token) {
    const t = opts.auth.token;
    lines.push("auth:", "  token:", `    realm: ${t.realm}`, `    service: ${t.service}`, `    issuer: ${t.issuer}`, `    rootcertbundle: ${t.certPath}`);
  }
  const configPath = join(work, "config.yml");
  writeFileSync(configPath, lines.join("\n") + "\n");
  // Killed with its parent, however that dies (a test run cut short, a bench
  // interrupted): a leftover registry would hold its port and temp dir.
  const run = dieWithParent(REGISTRY_BINARY, ["serve", configPath]);
  const child: ChildProcess = spawn(run.file, run.args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (b: Buffer) => {
    stderr += b.toString();
  });
  const url = `${opts.tls ? "https" : "http"}://${listen}:${port}`;
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
    rmSync(work, { recursive: true, force: true });
  };
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) break;
    const ok = await answers(`${url}/v2/`);
    if (ok) return { host: `${listen}:${port}`, url, storage, stop };
    await sleep(50);
  }
  await stop();
  throw new Error(`docker-registry did not start: ${stderr.slice(-2000)}`);
}

/** True when the registry answers /v2/ (any TLS certificate accepted: this only checks it is up). */
function answers(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = (url.startsWith("https:") ? https : http).get(url, { rejectUnauthorized: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200 || res.statusCode === 401);
    });
    req.on("error", () => resolve(false));
  });
}

/** A self-signed certificate for 127.0.0.1 and localhost, made by openssl in `dir`. */
export function selfSignedCertificate(dir: string): { certPath: string; keyPath: string } {
  const certPath = join(dir, "tls-cert.pem");
  const keyPath = join(dir, "tls-key.pem");
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", keyPath, "-out", certPath, "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
    { stdio: "ignore" },
  );
  return { certPath, keyPath };
}

/** Credentials for pushing to a registry that wants them (Basic, or a Bearer token from its realm). */
export interface PushAuth {
  readonly username: string;
  readonly password: string;
}

/**
 * A minimal pusher over the registry API (monolithic blob upload, manifest
 * PUT), so tests can publish exactly the bytes they made.
 */
export class RegistryPusher {
  private authorization: string | undefined;
  constructor(
    readonly registry: TestRegistry,
    private readonly auth?: PushAuth,
  ) {}

  async pushImage(repo: string, tag: string, image: TestImage): Promise<void> {
    for (const b of [image.config, ...image.layers]) await this.pushBlob(repo, b);
    await this.pushManifest(repo, image.manifest.digest, image.manifest);
    await this.pushManifest(repo, tag, image.manifest);
  }

  async pushBlob(repo: string, blob: TestBlob): Promise<void> {
    const head = await this.request("HEAD", repo, `/v2/${repo}/blobs/${blob.digest}`);
    if (head.status === 200) return;
    const start = await this.request("POST", repo, `/v2/${repo}/blobs/uploads/`);
    if (start.status !== 202) throw new Error(`upload start for ${blob.digest}: ${start.status} ${await start.text()}`);
    const location = new URL(start.headers.get("location")!, this.registry.url);
    location.searchParams.set("digest", blob.digest);
    const put = await this.request("PUT", repo, location.pathname + location.search, blob.bytes, "application/octet-stream");
    if (put.status !== 201) throw new Error(`upload of ${blob.digest}: ${put.status} ${await put.text()}`);
  }

  async pushManifest(repo: string, reference: string, manifest: TestBlob): Promise<void> {
    const put = await this.request("PUT", repo, `/v2/${repo}/manifests/${reference}`, manifest.bytes, manifest.mediaType);
    if (put.status !== 201) throw new Error(`manifest ${repo}:${reference}: ${put.status} ${await put.text()}`);
  }

  private async request(method: string, repo: string, path: string, body?: Buffer, contentType?: string): Promise<Response> {
    for (let i = 0; i < 3; i++) {
      const headers: Record<string, string> = {};
      if (this.authorization) headers.authorization = this.authorization;
      if (contentType) headers["content-type"] = contentType;
      const res = await fetch(new URL(path, this.registry.url), { method, headers, ...(body ? { body: new Uint8Array(body) } : {}) });
      if (res.status !== 401 || !this.auth) return res;
      await res.arrayBuffer();
      const challenge = parseChallenges(res.headers.get("www-authenticate") ?? "")[0];
      const basic = `Basic ${Buffer.from(`${this.auth.username}:${this.auth.password}`).toString("base64")}`;
      if (challenge?.scheme === "bearer") {
        const url = new URL(challenge.params.realm!);
        url.searchParams.set("service", challenge.params.service ?? "");
        url.searchParams.set("scope", `repository:${repo}:pull,push`);
        const t = (await (await fetch(url, { headers: { authorization: basic } })).json()) as { token: string };
        this.authorization = `Bearer ${t.token}`;
      } else {
        this.authorization = basic;
      }
    }
    throw new Error(`push to ${path}: still unauthorised`);
  }
}
