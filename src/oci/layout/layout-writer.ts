import { copyFile, mkdir, stat, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseDigest } from "../digest.js";
import { descriptorJson, type LocalImage } from "../local-image.js";
import { OCI_INDEX } from "../media-types.js";
import { REF_NAME_ANNOTATION } from "./oci-layout.js";

/** The image layout version this writer follows (image-spec image-layout.md). */
export const IMAGE_LAYOUT_VERSION = "1.0.0";

/**
 * Writes `image` as an OCI image layout in `dir` (image-spec
 * image-layout.md): the `oci-layout` marker, every blob under
 * blobs/ALGORITHM/HEX, and an index.json with one entry, the manifest, named
 * `tag` by the org.opencontainers.image.ref.name annotation (what `skopeo
 * copy oci:DIR:TAG` and `umoci unpack --image DIR:TAG` look for).
 *
 * `dir` is a fresh directory (an output's temporary): a blob already at
 * its place there (the layer, written straight into blobs/sha256) is kept,
 * any other is written or copied. Nothing is hashed again: the image's
 * descriptors were made from the bytes.
 */
export async function writeImageLayout(dir: string, image: LocalImage, tag: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: IMAGE_LAYOUT_VERSION }));
  for (const blob of [...image.blobs, { descriptor: image.manifest.descriptor, bytes: image.manifest.bytes }]) {
    const { algorithm, hex } = parseDigest(blob.descriptor.digest);
    const target = join(dir, "blobs", algorithm, hex);
    await mkdir(join(dir, "blobs", algorithm), { recursive: true });
    if (blob.bytes) await writeFile(target, blob.bytes);
    else if (resolve(blob.path as string) !== resolve(target) || !(await stat(target).catch(() => undefined))) await copyFile(blob.path as string, target);
  }
  const entry = { ...image.manifest.descriptor, annotations: { ...image.manifest.descriptor.annotations, [REF_NAME_ANNOTATION]: tag } };
  const index = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [descriptorJson(entry)] };
  await writeFile(join(dir, "index.json"), JSON.stringify(index));
}
