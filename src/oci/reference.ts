import { A3sError } from "../errors.js";
import { parseDigest } from "./digest.js";

/** The registry a name without one refers to, as Docker users expect. */
export const DOCKER_HUB = "docker.io";
/** Docker Hub's API lives on another host than its name. */
const DOCKER_HUB_API = "registry-1.docker.io";

/**
 * A parsed image reference, normalised the way the docker CLI does:
 * "alpine" is docker.io/library/alpine:latest.
 */
export interface ImageReference {
  /** host[:port], e.g. "docker.io", "localhost:5000", "[::1]:5000". */
  readonly registry: string;
  /** Path components, e.g. "library/alpine". */
  readonly repository: string;
  /** The tag; "latest" when neither tag nor digest was given. */
  readonly tag?: string;
  /** A pinned manifest digest; with a tag too, the digest wins and the tag is informative. */
  readonly digest?: string;
}

// The grammar of github.com/distribution/reference, written out here.
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const HOST_LABEL = /^(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])$/;
const MAX_NAME = 255;

/** Parses "[REGISTRY/]REPO[:TAG][@DIGEST]" and applies the Docker Hub defaults. */
export function parseReference(input: string): ImageReference {
  const bad = (why: string): A3sError =>
    new A3sError("EREFERENCE", `invalid image reference ${JSON.stringify(input)}: ${why}`, {
      subject: input,
      hint: "write it as [REGISTRY[:PORT]/]NAME[:TAG][@sha256:DIGEST], e.g. alpine:3.20 or localhost:5000/team/app@sha256:…",
    });
  if (input === "" || input !== input.trim()) throw bad("empty or surrounded by spaces");

  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    try {
      parseDigest(digest);
    } catch {
      throw bad(`${JSON.stringify(digest)} is not a sha256 or sha512 digest`);
    }
  }

  // A tag is after the last ":" that comes after the last "/": "host:5000/app" has none.
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(`${JSON.stringify(tag)} is not a valid tag`);
  }

  let registry = DOCKER_HUB;
  let path = rest;
  const slash = rest.indexOf("/");
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    // The docker CLI's rule: a first component is a registry when it looks like
    // a host (a dot or a port), is "localhost", or has capitals (never valid in a repository).
    if (first.includes(".") || first.includes(":") || first === "localhost" || first !== first.toLowerCase()) {
      registry = first;
      path = rest.slice(slash + 1);
      if (!validRegistry(registry)) throw bad(`${JSON.stringify(registry)} is not a valid registry host[:port]`);
    }
  }
  if (registry === "index.docker.io" || registry === "registry-1.docker.io") registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && !path.includes("/")) path = `library/${path}`;

  if (path === "") throw bad("no repository name");
  for (const component of path.split("/")) {
    if (!COMPONENT.test(component)) {
      throw bad(`${JSON.stringify(component)} is not a valid name component (lowercase letters, digits, and . _ __ - between them)`);
    }
  }
  if (`${registry}/${path}`.length > MAX_NAME) throw bad(`the name is longer than ${MAX_NAME} characters`);
  if (tag === undefined && digest === undefined) tag = "latest";
  return { registry, repository: path, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

function validRegistry(registry: string): boolean {
  let host = registry;
  let port: string | undefined;
  const v6 = /^\[([0-9A-Fa-f:.]+)\](?::(\d+))?$/.exec(registry);
  if (v6) return v6[2] === undefined || validPort(v6[2]);
  const colon = registry.lastIndexOf(":");
  if (colon >= 0) {
    host = registry.slice(0, colon);
    port = registry.slice(colon + 1);
    if (!validPort(port)) return false;
  }
  return host.length > 0 && host.split(".").every((label) => HOST_LABEL.test(label));
}

function validPort(port: string): boolean {
  return /^\d{1,5}$/.test(port) && Number(port) > 0 && Number(port) < 65536;
}

/** The canonical text of a reference: "docker.io/library/alpine:latest", "host:5000/app@sha256:…". */
export function formatReference(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag !== undefined ? `:${ref.tag}` : ""}${ref.digest !== undefined ? `@${ref.digest}` : ""}`;
}

/** What to ask the registry for: the digest when pinned, else the tag. */
export function manifestSelector(ref: ImageReference): string {
  return ref.digest ?? ref.tag ?? "latest";
}

/** The host[:port] that serves the registry API for this reference's registry. */
export function registryApiHost(registry: string): string {
  return registry === DOCKER_HUB ? DOCKER_HUB_API : registry;
}

/** The host part of host[:port] (brackets kept off an IPv6 address). */
export function registryHostname(registry: string): string {
  const v6 = /^\[([^\]]+)\]/.exec(registry);
  if (v6) return v6[1]!;
  const colon = registry.lastIndexOf(":");
  return colon >= 0 ? registry.slice(0, colon) : registry;
}

/**
 * True for registries on this machine. Only these may be spoken to over
 * plain HTTP without --insecure: elsewhere HTTP lets anyone on the path swap
 * the manifest (and with it every digest we would then "verify").
 */
export function isLoopbackRegistry(registry: string): boolean {
  const host = registryHostname(registry).toLowerCase();
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || host.endsWith(".localhost");
}
