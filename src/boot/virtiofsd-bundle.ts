import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { A3sError } from "../errors.js";

/**
 * A virtiofsd provisioned into the cache (virtiofsd-provision.ts): the
 * program, the dynamic loader of the Debian release it was built for and the
 * libraries it needs, all from that release's packages, never installed.
 *
 *   virtiofsd/virtiofsd_VERSION+SET/
 *     manifest.json      what follows, with the SHA256 of every file
 *     bin/virtiofsd
 *     lib/ld-linux-x86-64.so.2, lib/libc.so.6, ...
 *
 * It runs as `LOADER --library-path LIB PROGRAM`: the loader, not the host's,
 * so a program built against a newer glibc runs on an older host.
 */
export interface VirtiofsdManifest {
  readonly format: 1;
  /** `virtiofsd --version`, e.g. "virtiofsd 1.13.2". */
  readonly version: string;
  /** The suites the packages came from, e.g. ["trixie", "trixie-updates", "trixie-security"]. */
  readonly suites: readonly string[];
  readonly fetchedAt: string;
  /** The .deb files, each verified by apt against the archive's signed index; sha256 is of the .deb. */
  readonly packages: readonly { name: string; version: string; filename: string; sha256: string }[];
  /** Every file of the bundle, relative to its directory, with the package it was taken from. */
  readonly files: readonly { path: string; sha256: string; size: number; package: string }[];
  readonly program: string;
  readonly loader: string;
  readonly libraryDir: string;
}

export const MANIFEST = "manifest.json";

/** The cache folder holding every provisioned virtiofsd. */
export function virtiofsdCacheDir(cache: string): string {
  return join(cache, "virtiofsd");
}

export async function sha256File(path: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest("hex"), size };
}

/** A bundle's manifest, or undefined when the directory holds none (not a bundle, or an unfinished one). */
export async function readManifest(dir: string): Promise<VirtiofsdManifest | undefined> {
  const raw = await readFile(join(dir, MANIFEST), "utf8").catch(() => undefined);
  if (raw === undefined) return undefined;
  let m: VirtiofsdManifest;
  try {
    m = JSON.parse(raw) as VirtiofsdManifest;
  } catch {
    throw new A3sError("ECORRUPT", `${join(dir, MANIFEST)} is not valid JSON: the cached virtiofsd is damaged`, {
      subject: join(dir, MANIFEST),
      hint: "run: a3s-rootfs virtiofsd --fetch (it replaces a damaged bundle)",
    });
  }
  if (m.format !== 1 || !Array.isArray(m.files)) return undefined;
  return m;
}

/**
 * Checks every file of a bundle against the SHA256 its manifest recorded
 * when it was published, so a truncated, corrupted or edited file is never
 * executed. This runs on every use: hashing the few MiB takes milliseconds.
 * It cannot stop someone who can rewrite both a file and the manifest: they
 * could equally rewrite a3s-rootfs itself.
 */
export async function verifyBundle(dir: string, m: VirtiofsdManifest): Promise<void> {
  const listed = new Set(m.files.map((f) => f.path));
  for (const required of [m.program, m.loader]) {
    if (!listed.has(required)) throw damaged(dir, required, "is not listed in the manifest");
  }
  for (const f of m.files) {
    if (f.path.split("/").some((part) => part === ".." || part === "") || f.path.startsWith("/")) {
      throw damaged(dir, f.path, "is not a plain path inside the bundle");
    }
    const path = join(dir, f.path);
    const got = await sha256File(path).catch((e: NodeJS.ErrnoException) => {
      throw damaged(dir, f.path, `cannot be read (${e.code ?? e.message})`);
    });
    if (got.sha256 !== f.sha256 || got.size !== f.size) {
      throw damaged(dir, f.path, `does not match its recorded SHA256 (recorded ${f.sha256}, ${f.size} bytes; found ${got.sha256}, ${got.size} bytes)`);
    }
  }
}

function damaged(dir: string, path: string, why: string): A3sError {
  const file = join(dir, path);
  return new A3sError("ECORRUPT", `the cached virtiofsd file ${file} ${why}; it will not be run`, {
    subject: file,
    hint: "run: a3s-rootfs virtiofsd --fetch (it provisions a fresh copy and replaces the damaged one)",
  });
}

/** Every published bundle in the cache, newest first (unfinished fetches, hidden as .fetch-*, are skipped). */
export async function listBundles(cache: string): Promise<{ dir: string; manifest: VirtiofsdManifest }[]> {
  const root = virtiofsdCacheDir(cache);
  const names = await readdir(root).catch(() => [] as string[]);
  const found: { dir: string; manifest: VirtiofsdManifest }[] = [];
  for (const name of names) {
    if (name.startsWith(".")) continue;
    const dir = join(root, name);
    const manifest = await readManifest(dir).catch(() => undefined);
    if (manifest) found.push({ dir, manifest });
  }
  return found.sort((a, b) => b.manifest.fetchedAt.localeCompare(a.manifest.fetchedAt));
}

/** The argv that runs a bundle's virtiofsd through the bundle's own loader. */
export function bundleCommand(dir: string, m: VirtiofsdManifest): { file: string; prefix: string[] } {
  return {
    file: join(dir, m.loader),
    // --inhibit-cache: the host's /etc/ld.so.cache lists the host's older
    // libraries; every library the program needs is in the bundle.
    prefix: ["--inhibit-cache", "--library-path", join(dir, m.libraryDir), "--argv0", "virtiofsd", join(dir, m.program)],
  };
}
