import { createHash } from "node:crypto";
import { compressionForPath } from "../formats/compression/compress.js";
import type { GuestLayout } from "../layout/index.js";
import type { AgentSettings } from "../layout/apply-guest-config.js";
import type { OutputFormat, OutputSpec } from "../outputs/output.js";
import type { ContentRef, MetadataInit } from "../tree/index.js";
import { fileSha256 } from "../util/file-sha256.js";
import { packageManifest } from "../util/package-root.js";

/**
 * The build cache's key: a SHA-256 over everything an output is made from.
 * Two builds with the same key write the same bytes (every file output is
 * reproducible), so a cached output may stand in for a build. What goes in:
 * - the source's identity (an image's manifest digest and platform; "scratch");
 * - the agent's and the init's SHA-256 (their bytes, not their paths);
 * - the layout, the agent's settings (argv, env, user) and every added file
 *   with its metadata and the SHA-256 of its content;
 * - SOURCE_DATE_EPOCH, the format, its options (compression by extension;
 *   erofs's chosen compression; the writers' default compressors), dm-verity
 *   and its salt;
 * - the versions of the tools that write it (toolIdentity) and of a3s-rootfs.
 * Anything left out would let a changed input reuse an old output, so the
 * rule is: when in doubt, it goes in.
 */

/** The outputs kept in the build cache: single files, byte-for-byte reproducible. */
export const CACHEABLE_FORMATS: readonly OutputFormat[] = ["tar", "cpio", "ext4", "erofs", "squashfs"];

/** Whether an output goes through the build cache: a file of a cacheable format, not a push (a registry holds no file to copy). */
export function isCacheable(spec: Pick<OutputSpec, "format" | "push">): boolean {
  return CACHEABLE_FORMATS.includes(spec.format) && spec.push === undefined;
}

/** Bump when what a key covers, or how an output is written from the same inputs, changes. */
// 2: squashfs is written with zstd level 3 (SQUASHFS_ZSTD_LEVEL), not mksquashfs's 15,
// and erofs with lz4hc level 4 (EROFS_LZ4HC_LEVEL), not 9.
// 3: ext4 is filled without metadata_csum, which tune2fs and e2fsck -fpD then
// switch on (directories rebuilt, htree-indexed).
// 4: ext4 is written by a3s-rootfs itself (formats/ext4/writer.ts), not mke2fs.
const KEY_RECIPE = "a3s-build-cache/4";

/** The inputs every output of one build shares, hashed once. */
export interface BuildInputs {
  readonly digest: string;
}

export async function buildInputs(o: {
  source: string;
  epoch: number;
  checked: { layout: GuestLayout; agent: ContentRef | undefined; init: ContentRef | undefined };
  agentSettings: AgentSettings;
  files: readonly { path: string; content: string | Uint8Array | { readonly hostPath: string }; meta: MetadataInit }[];
  verity: string | null;
}): Promise<BuildInputs> {
  const files = [];
  for (const f of o.files) {
    const content =
      typeof f.content === "string" || f.content instanceof Uint8Array ? sha256Bytes(f.content) : await sha256OfFile(f.content.hostPath);
    files.push({ path: f.path, meta: f.meta, content });
  }
  const doc = {
    recipe: KEY_RECIPE,
    a3sRootfs: packageManifest().version,
    source: o.source,
    epoch: o.epoch,
    layout: o.checked.layout,
    agent: o.checked.agent ? await contentDigest(o.checked.agent) : null,
    init: o.checked.init ? await contentDigest(o.checked.init) : null,
    agentSettings: o.agentSettings,
    files,
    verity: o.verity,
  };
  return { digest: sha256Bytes(stableJson(doc)) };
}

/** The key of one output: the build's inputs, the format and its options, and the tools that write it. */
export function outputKey(inputs: BuildInputs, spec: OutputSpec, tools: string): string {
  // An erofs output at the writer's default ("lz4hc", formats/erofs/writer.ts,
  // named here rather than imported: a build that writes no erofs loads no
  // erofs code) keeps the key it had before the compression could be chosen.
  const options =
    spec.format === "tar" || spec.format === "cpio"
      ? { compression: compressionForPath(spec.path) }
      : spec.format === "erofs" && spec.erofsCompression !== undefined && spec.erofsCompression !== "lz4hc"
        ? { compression: spec.erofsCompression }
        : { defaults: spec.format };
  return sha256Bytes(stableJson({ inputs: inputs.digest, format: spec.format, options, tools }));
}

async function contentDigest(ref: ContentRef): Promise<string> {
  if (ref.type === "hostFile") return sha256OfFile(ref.path);
  if (ref.type === "bytes") return sha256Bytes(ref.data);
  // Any other reference (a layer range) never reaches the key: agents and inits come from the host or from bytes.
  return sha256Bytes(stableJson(ref));
}

function sha256Bytes(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

async function sha256OfFile(path: string): Promise<string> {
  return (await fileSha256(path)).sha256;
}

/** JSON with object keys sorted, so the same inputs always hash the same. */
function stableJson(v: unknown): string {
  return JSON.stringify(v, (_k, value: unknown) => {
    if (value instanceof Uint8Array) return Buffer.from(value).toString("hex");
    if (value && typeof value === "object" && !Array.isArray(value)) {
      return Object.fromEntries(Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    }
    return value;
  });
}
