import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeImageLayout } from "../oci/layout/layout-writer.js";
import type { LayerCompression } from "../oci/media-types.js";
import type { RootfsTree } from "../tree/index.js";
import { writeOciImage } from "./oci-image.js";
import { DEFAULT_LAYOUT_TAG } from "./oci-layout-spec.js";
import type { OutputContext, OutputPaths, OutputResult, OutputWriter } from "./output.js";

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
