import { rm, writeFile } from "node:fs/promises";
import type { VerityInfo } from "../formats/verity/index.js";
import type { RootfsTree } from "../tree/index.js";
import { temporaryPathFor } from "./atomic.js";
import type { OutputCompanion, OutputFormat } from "./output.js";

/** The outputs that can carry a dm-verity hash tree: the block-device images. */
export const VERITY_FORMATS: readonly OutputFormat[] = ["erofs", "squashfs", "ext4"];

export interface VerityRequest {
  /** The salt to use; default: derived from the tree (deriveVeritySalt), so the same build gives the same root hash. */
  readonly salt?: Buffer | undefined;
}

/**
 * Appends the hash tree to a finished image at `tmp` (before it is
 * published, so nothing half-built is ever seen) and writes the
 * `FINAL.verity.json` record beside it, as a companion published right after
 * the image. The image is read once for both the tree and its SHA-256.
 *
 * The default salt comes from what the image is made of: a digest of the
 * tree's every entry (name, kind, mode, owner, size, time, link target) and
 * the format. It is not a secret (dm-verity's salt only makes each image's
 * tree its own), and deriving it keeps the root hash reproducible.
 */
export async function addVerityTree(
  tree: RootfsTree,
  format: OutputFormat,
  paths: { tmp: string; final: string },
  request: VerityRequest,
  signal?: AbortSignal,
): Promise<{ info: VerityInfo; fileSha256: string; companion: OutputCompanion }> {
  // Loaded when a build asks for verity: other builds never need the hash-tree code (CLI start time).
  const [{ treeDigest }, { appendVerityTree, deriveVeritySalt, renderVeritySidecar, veritySidecarPath }] = await Promise.all([
    import("../formats/image/index.js"),
    import("../formats/verity/index.js"),
  ]);
  const salt = request.salt ?? deriveVeritySalt(treeDigest(tree, format).toString("hex"));
  const written = await appendVerityTree(paths.tmp, salt, signal ? { signal } : {});
  const { fileSha256, ...treeInfo } = written;
  const info: VerityInfo = { ...treeInfo, hashPath: paths.final };
  const final = veritySidecarPath(paths.final);
  const companion = { tmp: temporaryPathFor(final), final };
  await writeFile(companion.tmp, renderVeritySidecar(info));
  return { info, fileSha256, companion };
}

/**
 * Removes the `FINAL.verity.json` a3s-rootfs wrote for an earlier image at
 * this path, once an image without a hash tree replaced it: the record
 * would describe an image that is gone. A file there that is not such a
 * record is not ours and stays.
 */
export async function removeStaleVerityRecord(final: string): Promise<void> {
  const { readVeritySidecar, veritySidecarPath } = await import("../formats/verity/sidecar.js");
  const record = await readVeritySidecar(final).catch(() => null);
  if (record) await rm(veritySidecarPath(final), { force: true });
}
