import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, chmodSync, linkSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { gzipSync } from "node:zlib";
import {
  DOCKER_CONFIG,
  DOCKER_LAYER_GZIP,
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  OCI_CONFIG,
  OCI_INDEX,
  OCI_LAYER_GZIP,
  OCI_LAYER_TAR,
  OCI_LAYER_ZSTD,
  OCI_MANIFEST,
} from "../../src/oci/media-types.js";

/** Bytes with the descriptor that names them. */
export interface TestBlob {
  readonly bytes: Buffer;
  readonly digest: string;
  readonly size: number;
  readonly mediaType: string;
}

export interface TestLayer extends TestBlob {
  /** sha256 of the uncompressed tar. */
  readonly diffId: string;
}

/** An image as a test pushes it: manifest, config, layers. */
export interface TestImage {
  readonly manifest: TestBlob;
  readonly config: TestBlob;
  readonly layers: readonly TestLayer[];
}

/** One entry of a test layer, made on disk and archived by GNU tar. */
export type TestEntry =
  | { readonly path: string; readonly content: string | Buffer; readonly mode?: number }
  | { readonly path: string; readonly dir: true; readonly mode?: number }
  | { readonly path: string; readonly symlink: string }
  | { readonly path: string; readonly hardlinkTo: string };

export function blobOf(bytes: Buffer | string, mediaType: string): TestBlob {
  const b = typeof bytes === "string" ? Buffer.from(bytes) : bytes;
  return { bytes: b, digest: `sha256:${createHash("sha256").update(b).digest("hex")}`, size: b.length, mediaType };
}

/**
 * A layer blob: the entries written to a temporary directory and archived by
 * GNU tar (PAX, sorted, numeric root ownership, mtime 0), then compressed.
 * Whiteouts are ordinary files named ".wh.NAME", as in any real layer.
 */
export function makeLayer(entries: readonly TestEntry[], compression: "gzip" | "zstd" | "none" = "gzip", docker = false): TestLayer {
  const dir = mkdtempSync(join(tmpdir(), "a3s-layer-"));
  try {
    for (const e of entries) {
      const p = join(dir, e.path);
      mkdirSync(dirname(p), { recursive: true });
      if ("content" in e) {
        writeFileSync(p, e.content);
        chmodSync(p, e.mode ?? 0o644);
      } else if ("dir" in e) {
        mkdirSync(p, { recursive: true });
        chmodSync(p, e.mode ?? 0o755);
      } else if ("symlink" in e) {
        symlinkSync(e.symlink, p);
      } else {
        linkSync(join(dir, e.hardlinkTo), p);
      }
    }
    const names = readdirSync(dir).sort();
    const tar = execFileSync(
      "tar",
      ["--format=pax", "--sort=name", "--mtime=@0", "--numeric-owner", "--owner=0", "--group=0", "--pax-option=delete=atime,delete=ctime", "-C", dir, "-cf", "-", "--", ...names],
      { maxBuffer: 1 << 30 },
    );
    const diffId = `sha256:${createHash("sha256").update(tar).digest("hex")}`;
    let blob: Buffer;
    let mediaType: string;
    if (compression === "gzip") {
      blob = gzipSync(tar);
      mediaType = docker ? DOCKER_LAYER_GZIP : OCI_LAYER_GZIP;
    } else if (compression === "zstd") {
      blob = execFileSync("zstd", ["-q", "-c", "-3"], { input: tar, maxBuffer: 1 << 30 });
      mediaType = OCI_LAYER_ZSTD;
    } else {
      blob = tar;
      mediaType = OCI_LAYER_TAR;
    }
    return { ...blobOf(blob, mediaType), diffId };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface ImageOptions {
  readonly os?: string;
  readonly architecture?: string;
  readonly variant?: string;
  readonly entrypoint?: string[];
  readonly cmd?: string[];
  readonly env?: string[];
  readonly workingDir?: string;
  readonly user?: string;
  /** Docker media types (manifest v2 schema 2) instead of OCI. */
  readonly docker?: boolean;
}

/** An image from layers: a config with their diff_ids and a manifest naming everything. */
export function makeImage(layers: readonly TestLayer[], opts: ImageOptions = {}): TestImage {
  const config = blobOf(
    JSON.stringify({
      architecture: opts.architecture ?? "amd64",
      os: opts.os ?? "linux",
      ...(opts.variant ? { variant: opts.variant } : {}),
      config: {
        ...(opts.entrypoint ? { Entrypoint: opts.entrypoint } : {}),
        ...(opts.cmd ? { Cmd: opts.cmd } : {}),
        ...(opts.env ? { Env: opts.env } : {}),
        ...(opts.workingDir ? { WorkingDir: opts.workingDir } : {}),
        ...(opts.user ? { User: opts.user } : {}),
      },
      rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
    }),
    opts.docker ? DOCKER_CONFIG : OCI_CONFIG,
  );
  const mediaType = opts.docker ? DOCKER_MANIFEST : OCI_MANIFEST;
  const manifest = blobOf(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      config: descriptor(config),
      layers: layers.map(descriptor),
    }),
    mediaType,
  );
  return { manifest, config, layers };
}

export interface IndexEntry {
  readonly manifest: TestBlob;
  readonly platform?: { os: string; architecture: string; variant?: string };
  readonly annotations?: Record<string, string>;
}

/** An OCI index (or a Docker manifest list) over manifests or nested indexes. */
export function makeIndex(entries: readonly IndexEntry[], docker = false): TestBlob {
  const mediaType = docker ? DOCKER_MANIFEST_LIST : OCI_INDEX;
  return blobOf(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      manifests: entries.map((e) => ({
        ...descriptor(e.manifest),
        ...(e.platform ? { platform: e.platform } : {}),
        ...(e.annotations ? { annotations: e.annotations } : {}),
      })),
    }),
    mediaType,
  );
}

export function descriptor(b: TestBlob): { mediaType: string; digest: string; size: number } {
  return { mediaType: b.mediaType, digest: b.digest, size: b.size };
}

/**
 * Writes an OCI image layout (oci-layout, index.json, blobs/sha256/…) with
 * `tag` naming `top`, for tools such as skopeo to read.
 */
export function writeOciLayout(dir: string, tag: string, top: TestBlob, blobs: readonly TestBlob[]): void {
  mkdirSync(join(dir, "blobs", "sha256"), { recursive: true });
  writeFileSync(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  for (const b of [top, ...blobs]) writeFileSync(join(dir, "blobs", "sha256", b.digest.slice("sha256:".length)), b.bytes);
  writeFileSync(
    join(dir, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [{ ...descriptor(top), annotations: { "org.opencontainers.image.ref.name": tag } }],
    }),
  );
}
