import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { A3sError } from "../errors.js";
import { fileSha256 } from "../util/file-sha256.js";
import type { ToolCommand } from "../util/host-tool.js";

/**
 * A host tool provisioned into the cache from a newer Debian release
 * (provision-bundle.ts): the program, the dynamic loader of the release it
 * was built for and the libraries it needs, all from that release's
 * packages, never installed.
 *
 *   KIND/NAME_VERSION+SET/
 *     manifest.json      what follows, with the SHA256 of every file
 *     bin/PROGRAM
 *     lib/ld-linux-x86-64.so.2, lib/libc.so.6, ...
 *
 * It runs as `LOADER --library-path LIB PROGRAM`: the loader, not the host's,
 * so a program built against a newer glibc runs on an older host.
 */
export interface ToolBundleManifest {
  readonly format: 1;
  /** The program's own version line, e.g. "virtiofsd 1.13.2" or "mkfs.erofs (erofs-utils) 1.8.6". */
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

/** What a kind of bundle is called in messages, and how a damaged one is replaced. */
export interface BundleKind {
  /** The cache folder and the word in messages: "virtiofsd", "erofs-utils". */
  readonly name: string;
  /** The command that provisions a fresh copy, for hints: "a3s-rootfs virtiofsd --fetch". */
  readonly refetch: string;
}

export const MANIFEST = "manifest.json";

/** The cache folder holding every provisioned bundle of one kind. */
export function bundleCacheDir(cache: string, kind: BundleKind): string {
  return join(cache, kind.name);
}

/**
 * A file's SHA-256 and size. Through util/file-sha256.ts (one reused buffer,
 * synchronous reads): every run with a share verifies virtiofsd's 6.6 MB
 * bundle this way before starting it, and a read stream took 70 ms for it.
 */
export async function sha256File(path: string): Promise<{ sha256: string; size: number }> {
  const { sha256, bytes } = await fileSha256(path);
  return { sha256, size: bytes };
}

/** A bundle's manifest, or undefined when the directory holds none (not a bundle, or an unfinished one). */
export async function readManifest(dir: string, kind: BundleKind): Promise<ToolBundleManifest | undefined> {
  const raw = await readFile(join(dir, MANIFEST), "utf8").catch(() => undefined);
  if (raw === undefined) return undefined;
  let m: ToolBundleManifest;
  try {
    m = JSON.parse(raw) as ToolBundleManifest;
  } catch {
    throw new A3sError("ECORRUPT", `${join(dir, MANIFEST)} is not valid JSON: the cached ${kind.name} is damaged`, {
      subject: join(dir, MANIFEST),
      hint: `run: ${kind.refetch} (it replaces a damaged bundle)`,
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
export async function verifyBundle(dir: string, m: ToolBundleManifest, kind: BundleKind): Promise<void> {
  const listed = new Set(m.files.map((f) => f.path));
  for (const required of [m.program, m.loader]) {
    if (!listed.has(required)) throw damaged(dir, required, "is not listed in the manifest", kind);
  }
  for (const f of m.files) {
    if (f.path.split("/").some((part) => part === ".." || part === "") || f.path.startsWith("/")) {
      throw damaged(dir, f.path, "is not a plain path inside the bundle", kind);
    }
    const path = join(dir, f.path);
    const got = await sha256File(path).catch((e: NodeJS.ErrnoException) => {
      throw damaged(dir, f.path, `cannot be read (${e.code ?? e.message})`, kind);
    });
    if (got.sha256 !== f.sha256 || got.size !== f.size) {
      throw damaged(dir, f.path, `does not match its recorded SHA256 (recorded ${f.sha256}, ${f.size} bytes; found ${got.sha256}, ${got.size} bytes)`, kind);
    }
  }
}

function damaged(dir: string, path: string, why: string, kind: BundleKind): A3sError {
  const file = join(dir, path);
  return new A3sError("ECORRUPT", `the cached ${kind.name} file ${file} ${why}; it will not be run`, {
    subject: file,
    hint: `run: ${kind.refetch} (it provisions a fresh copy and replaces the damaged one)`,
  });
}

/** Every published bundle of a kind in the cache, newest first (unfinished fetches, hidden as .fetch-*, are skipped). */
export async function listBundles(cache: string, kind: BundleKind): Promise<{ dir: string; manifest: ToolBundleManifest }[]> {
  const root = bundleCacheDir(cache, kind);
  const names = await readdir(root).catch(() => [] as string[]);
  const found: { dir: string; manifest: ToolBundleManifest }[] = [];
  for (const name of names) {
    if (name.startsWith(".")) continue;
    const dir = join(root, name);
    const manifest = await readManifest(dir, kind).catch(() => undefined);
    if (manifest) found.push({ dir, manifest });
  }
  return found.sort((a, b) => b.manifest.fetchedAt.localeCompare(a.manifest.fetchedAt));
}

/** The argv that runs a bundle's program through the bundle's own loader, with argv[0] `argv0`. */
export function bundleCommand(dir: string, m: ToolBundleManifest, argv0: string): ToolCommand {
  return {
    origin: "cache",
    label: join(dir, m.program),
    file: join(dir, m.loader),
    // --inhibit-cache: the host's /etc/ld.so.cache lists the host's older
    // libraries; every library the program needs is in the bundle.
    prefix: ["--inhibit-cache", "--library-path", join(dir, m.libraryDir), "--argv0", argv0, join(dir, m.program)],
  };
}

/**
 * The newest bundle of a kind, its files verified against their recorded
 * hashes first; a damaged one is an error naming the file, never run and
 * never silently skipped.
 */
export async function newestVerifiedBundle(cache: string, kind: BundleKind): Promise<{ dir: string; manifest: ToolBundleManifest } | undefined> {
  const newest = (await listBundles(cache, kind))[0];
  if (!newest) return undefined;
  await verifyBundle(newest.dir, newest.manifest, kind);
  return newest;
}
