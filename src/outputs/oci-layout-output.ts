import { mkdir, readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { A3sError } from "../errors.js";
import { writeImageLayout } from "../oci/layout/layout-writer.js";
import type { LayerCompression } from "../oci/media-types.js";
import type { RootfsTree } from "../tree/index.js";
import { LAYOUT_VERSION_LABEL, writeOciImage } from "./oci-image.js";
import type { OutputContext, OutputPaths, OutputResult, OutputSpec, OutputWriter } from "./output.js";

/** The tag an `oci:DIR` output names its image by when none is given. */
export const DEFAULT_LAYOUT_TAG = "latest";
/** What a tag may be (the distribution reference grammar's tag). */
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/**
 * Parses `oci:DIR[:TAG]`: the tag is what follows the last ":" after the
 * last "/" when it is a valid tag, so "oci:out/img:v1" is DIR out/img and
 * TAG v1, and "oci:img" is TAG latest. Undefined for specs of other formats.
 */
export function parseOciLayoutSpec(spec: string): OutputSpec | undefined {
  if (!spec.startsWith("oci:")) return undefined;
  let path = spec.slice("oci:".length);
  let tag = DEFAULT_LAYOUT_TAG;
  const colon = path.lastIndexOf(":");
  if (colon > path.lastIndexOf("/") && colon >= 0) {
    const candidate = path.slice(colon + 1);
    if (!TAG.test(candidate)) {
      throw new A3sError("EUSAGE", `invalid output ${JSON.stringify(spec)}: ${JSON.stringify(candidate)} is not a valid tag`, {
        subject: spec,
        hint: "write oci:DIR or oci:DIR:TAG; a tag has letters, digits, _ . - and starts with a letter, digit or _",
      });
    }
    tag = candidate;
    path = path.slice(0, colon);
  }
  if (path === "") throw new A3sError("EUSAGE", `invalid output ${JSON.stringify(spec)}: no directory`, { subject: spec, hint: "e.g. -o oci:rootfs-oci:v1" });
  return { format: "oci", path, tag };
}

/**
 * `oci`: the rootfs as an OCI image layout in a directory, the image named
 * by the spec's tag: one layer (the tree as this project's tar, gzip, zstd
 * or none) and a config that starts the agent (see oci-image.ts).
 */
export function createOciLayoutWriter(opts: { tag?: string; compression?: LayerCompression } = {}): OutputWriter {
  return {
    format: "oci",
    async write(tree: RootfsTree, paths: OutputPaths, ctx: OutputContext): Promise<void> {
      const blobs = join(paths.tmp, "blobs", "sha256");
      await mkdir(blobs, { recursive: true });
      const image = await writeOciImage(tree, {
        epoch: ctx.epoch,
        layerDir: blobs,
        ...(opts.compression ? { compression: opts.compression } : {}),
        ...(ctx.signal ? { signal: ctx.signal } : {}),
      });
      await writeImageLayout(paths.tmp, image, opts.tag ?? DEFAULT_LAYOUT_TAG);
    },
  };
}

export const ociLayoutOutput: OutputWriter = createOciLayoutWriter();

/** The report of a published `oci` output: the manifest digest from its index.json, the bytes of its blobs. */
export async function describeLayoutOutput(path: string): Promise<OutputResult> {
  const index = JSON.parse(await readFile(join(path, "index.json"), "utf8")) as { manifests: { digest: string }[] };
  const digest = index.manifests[0]!.digest;
  const manifest = JSON.parse(await readFile(join(path, "blobs", "sha256", digest.slice("sha256:".length)), "utf8")) as {
    config: { size: number };
    layers: { size: number }[];
  };
  const bytes = manifest.config.size + manifest.layers.reduce((n, l) => n + l.size, 0);
  return { format: "oci", path, bytes, sha256: null, digest };
}

/** Largest index.json or manifest an `oci` output writes, with room to spare: anything larger is not ours. */
const MAX_MARK_DOCUMENT_BYTES = 1 << 20;

/**
 * Whether `dir` holds exactly one OCI image layout as an `oci` output
 * writes it: the oci-layout marker, an index.json naming one manifest whose
 * config carries a3s-rootfs's layout version label, and no blob but that
 * manifest's. Such a directory may be replaced by the next build
 * (output-target.ts); one holding any other image or file is not ours to
 * delete. Anything unreadable or malformed is not ours either.
 */
export async function layoutMarks(dir: string): Promise<boolean> {
  try {
    const names = (await readdir(dir)).sort();
    if (names.join("/") !== "blobs/index.json/oci-layout") return false;
    if ((await readdir(join(dir, "blobs"))).join("/") !== "sha256") return false;
    const blob = (digest: unknown): string => {
      if (typeof digest !== "string" || !/^sha256:[0-9a-f]{64}$/.test(digest)) throw new Error("not a sha256 digest");
      return join(dir, "blobs", "sha256", digest.slice("sha256:".length));
    };
    const json = async (path: string): Promise<Record<string, unknown>> => {
      if ((await stat(path)).size > MAX_MARK_DOCUMENT_BYTES) throw new Error("too large");
      return JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
    };
    const index = await json(join(dir, "index.json"));
    const entries = index.manifests;
    if (!Array.isArray(entries) || entries.length !== 1) return false;
    const manifestDigest = (entries[0] as { digest?: unknown }).digest;
    const manifest = (await json(blob(manifestDigest))) as { config?: { digest?: unknown }; layers?: { digest?: unknown }[] };
    const config = (await json(blob(manifest.config?.digest))) as { config?: { Labels?: Record<string, unknown> } };
    if (typeof config.config?.Labels?.[LAYOUT_VERSION_LABEL] !== "string") return false;
    const ours = new Set([manifestDigest, manifest.config?.digest, ...(manifest.layers ?? []).map((l) => l.digest)].map((d) => blob(d)));
    const present = (await readdir(join(dir, "blobs", "sha256"))).map((n) => join(dir, "blobs", "sha256", n));
    return present.every((p) => ours.has(p));
  } catch {
    return false;
  }
}
