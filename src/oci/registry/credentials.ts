import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { A3sError } from "../../errors.js";
import { findExecutable } from "../../util/host-tool.js";
import { DOCKER_HUB } from "../reference.js";

/** What a registry login gives: a user and password, or an identity (refresh) token from `docker login`. */
export type RegistryCredentials =
  | { readonly username: string; readonly password: string }
  | { readonly identityToken: string };

/** The server name docker writes for Docker Hub in config.json and asks helpers about. */
const DOCKER_HUB_SERVER = "https://index.docker.io/v1/";

/** Docker's config: $DOCKER_CONFIG/config.json, else ~/.docker/config.json. */
export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.DOCKER_CONFIG ?? join(homedir(), ".docker"), "config.json");
}

/** Parses "--creds USER:PASS" (the password may contain colons; the user may not). */
export function parseCredsFlag(text: string): RegistryCredentials {
  const colon = text.indexOf(":");
  if (colon <= 0) {
    throw new A3sError("EUSAGE", "--creds must be USER:PASSWORD", { hint: "e.g. --creds alice:s3cret (or use docker login)" });
  }
  return { username: text.slice(0, colon), password: text.slice(colon + 1) };
}

interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

export interface CredentialLookupOptions {
  readonly configPath?: string;
  /** Told when a configured helper is missing, so the pull goes on anonymously but not silently. */
  readonly warn?: (message: string) => void;
}

/**
 * The credentials docker would use for `registry` (host[:port], "docker.io"
 * for Docker Hub): a credential helper named for the registry in
 * `credHelpers`, else the `credsStore`, else the inline `auths` entry.
 * Undefined when there are none (an anonymous pull).
 */
export async function dockerCredentials(registry: string, opts: CredentialLookupOptions = {}): Promise<RegistryCredentials | undefined> {
  const path = opts.configPath ?? dockerConfigPath();
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    return undefined;
  }
  let config: DockerConfig;
  try {
    config = JSON.parse(text) as DockerConfig;
  } catch (e) {
    throw new A3sError("ECREDS", `${path} is not valid JSON: ${(e as Error).message}`, { subject: path });
  }
  const keys = serverKeys(registry);
  const helpers = Object.entries(config.credHelpers ?? {}).filter(([k]) => keys.includes(normaliseServer(k)));
  const helper = helpers.map(([, h]) => h).find((h) => typeof h === "string") ?? config.credsStore;
  if (typeof helper === "string" && helper !== "") {
    const found = await fromHelper(helper, registry === DOCKER_HUB ? DOCKER_HUB_SERVER : registry, opts.warn);
    if (found) return found;
  }
  for (const [key, entry] of Object.entries(config.auths ?? {})) {
    if (!keys.includes(normaliseServer(key)) || typeof entry !== "object" || entry === null) continue;
    if (entry.identitytoken) return { identityToken: entry.identitytoken };
    if (entry.auth) {
      const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      if (colon > 0) return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    }
    if (entry.username && entry.password) return { username: entry.username, password: entry.password };
  }
  return undefined;
}

/** The names a registry may be filed under in config.json. */
function serverKeys(registry: string): string[] {
  return registry === DOCKER_HUB ? [DOCKER_HUB, "index.docker.io", "registry-1.docker.io"] : [registry.toLowerCase()];
}

/** "https://index.docker.io/v1/" → "index.docker.io"; "http://host:5000" → "host:5000". */
function normaliseServer(key: string): string {
  return key.replace(/^[a-z]+:\/\//i, "").split("/")[0]!.toLowerCase();
}

/** Longest a credential helper may take (some talk to a keychain daemon). */
const HELPER_TIMEOUT_MS = 30_000;

/**
 * Asks `docker-credential-NAME get` (the docker credential-helper protocol:
 * server URL on stdin, {ServerURL, Username, Secret} on stdout). A helper
 * that knows nothing of this server is not an error: the pull is anonymous.
 */
async function fromHelper(name: string, server: string, warn?: (m: string) => void): Promise<RegistryCredentials | undefined> {
  // The helper's name comes from a config file; it must stay a plain name so
  // it cannot point at an arbitrary program ("../../tmp/x").
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) {
    throw new A3sError("ECREDS", `invalid credential helper name ${JSON.stringify(name)} in docker config`, { subject: name });
  }
  const program = findExecutable(`docker-credential-${name}`);
  if (!program) {
    warn?.(`credential helper docker-credential-${name} is not installed; going on without credentials for ${server}`);
    return undefined;
  }
  const { code, stdout, stderr } = await runHelper(program, server);
  if (code !== 0) {
    if (/credentials not found/i.test(stdout + stderr)) return undefined;
    throw new A3sError("ECREDS", `docker-credential-${name} get failed for ${server}: ${(stderr || stdout).trim().slice(0, 300)}`, {
      subject: program,
      hint: `try "docker-credential-${name} get" yourself, or pass --creds USER:PASSWORD`,
    });
  }
  let reply: { Username?: unknown; Secret?: unknown };
  try {
    reply = JSON.parse(stdout) as { Username?: unknown; Secret?: unknown };
  } catch {
    throw new A3sError("ECREDS", `docker-credential-${name} printed something that is not JSON`, { subject: program });
  }
  if (typeof reply.Secret !== "string" || reply.Secret === "") return undefined;
  // "<token>" as the user is the protocol's way of saying the secret is an identity token.
  if (reply.Username === "<token>") return { identityToken: reply.Secret };
  if (typeof reply.Username !== "string") return undefined;
  return { username: reply.Username, password: reply.Secret };
}

function runHelper(program: string, server: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, ["get"], { stdio: ["pipe", "pipe", "pipe"], timeout: HELPER_TIMEOUT_MS });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.stdin.on("error", () => {
      // The helper exited without reading; its status says why.
    });
    child.on("error", (e) => reject(new A3sError("ECREDS", `cannot run ${program}: ${e.message}`, { subject: program })));
    child.on("close", (code) => resolve({ code: code ?? 1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }));
    child.stdin.end(server);
  });
}
