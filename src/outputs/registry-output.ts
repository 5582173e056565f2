import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { A3sError } from "../errors.js";
import type { VerityInfo } from "../formats/verity/index.js";
import { GUEST_PROTOCOL_VERSION, readGuestLaunch } from "../layout/index.js";
import type { LocalImage } from "../oci/local-image.js";
import type { LayerCompression } from "../oci/media-types.js";
import { parseReference } from "../oci/reference.js";
import { RegistryClient } from "../oci/registry/client.js";
import { pushImage } from "../oci/registry/push.js";
import { rootfsArtifact, type BootImageFormat } from "../oci/rootfs-artifact.js";
import type { RootfsTree } from "../tree/index.js";
import { hashFile, imagePlatform, writeOciImage } from "./oci-image.js";
import type { OutputContext, OutputResult, OutputSpec } from "./output.js";
import { outputWriterFor } from "./registry.js";
import { addVerityTree, VERITY_FORMATS } from "./verity-output.js";

/**
 * Pushes one output: format `oci` as an OCI image (the one-layer image of
 * oci-image.ts), any boot image format as an artifact (the image written by
 * its ordinary writer, see oci/rootfs-artifact.ts). What is pushed is made
 * in a scratch directory removed afterwards; nothing is written beside the
 * user's files. The push itself is oci/registry/push.ts: blobs first,
 * manifest last, nothing sent that the registry has.
 */
export async function pushOutput(tree: RootfsTree, spec: OutputSpec, ctx: OutputContext): Promise<OutputResult> {
  const push = spec.push;
  if (!push) throw new Error(`pushOutput needs a push spec, got ${spec.format}:${spec.path}`);
  const ref = parseReference(push.reference);
  const scratch = await mkdtemp(join(ctx.scratchDir ?? tmpdir(), "a3s-push-"));
  try {
    const client = new RegistryClient({
      warn: ctx.warn,
      ...(push.credentials ? { credentials: push.credentials } : {}),
      ...(push.insecure !== undefined ? { insecure: push.insecure } : {}),
    });
    let image: LocalImage;
    let bytes: number;
    let sha256: string | null = null;
    let verity: VerityInfo | undefined;
    if (spec.format === "oci") {
      image = await writeOciImage(tree, {
        epoch: ctx.epoch,
        layerDir: scratch,
        ...(spec.compression ? { compression: spec.compression } : {}),
        ...(ctx.signal ? { signal: ctx.signal } : {}),
      });
      bytes = image.blobs.reduce((n, b) => n + b.descriptor.size, 0);
    } else {
      const format = spec.format as BootImageFormat;
      const compression: LayerCompression = format === "cpio" ? (spec.compression ?? "gzip") : "none";
      const file = join(scratch, artifactFileName(format, compression));
      const writer = outputWriterFor(spec);
      if (!writer) throw new A3sError("EUSAGE", `output format ${spec.format} is not available`, { subject: spec.format });
      // The writer reads the compression from the name, as for -o cpio:PATH.
      const written = await writer.write(tree, { tmp: file, final: file }, ctx);
      let digest: string;
      let size: number;
      if (ctx.verity && VERITY_FORMATS.includes(spec.format)) {
        // The hash tree is appended as for a local image; its record goes to the artifact's annotations.
        const added = await addVerityTree(tree, spec.format, { tmp: file, final: file }, ctx.verity, ctx.signal);
        verity = { ...added.info, hashPath: spec.path };
        digest = `sha256:${added.fileSha256}`;
        size = (await stat(file)).size;
      } else {
        // The writer's own digest where it saw every byte (an uncompressed cpio), else the file read back.
        ({ digest, size } = written?.digest ? { digest: `sha256:${written.digest.sha256}`, size: written.digest.bytes } : await hashFile(file));
      }
      const platform = await imagePlatform(tree, await readGuestLaunch(tree));
      image = rootfsArtifact({
        file: { path: file, digest, size },
        format,
        compression,
        platform,
        epoch: ctx.epoch,
        layoutVersion: GUEST_PROTOCOL_VERSION,
        ...(verity ? { verity } : {}),
      });
      bytes = size;
      sha256 = digest.slice("sha256:".length);
    }
    ctx.signal?.throwIfAborted();
    const result = await pushImage(client, ref, image, {
      ...(push.chunkBytes !== undefined ? { chunkBytes: push.chunkBytes } : {}),
      ...(ctx.signal ? { signal: ctx.signal } : {}),
    });
    return {
      format: spec.format,
      path: spec.path,
      bytes,
      sha256,
      digest: result.digest,
      reference: result.reference,
      pushed: { uploaded: result.uploaded, mounted: result.mounted, existing: result.existing, uploadedBytes: result.uploadedBytes, manifest: result.manifest },
      ...(verity ? { verity } : {}),
    };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

function artifactFileName(format: BootImageFormat, compression: LayerCompression): string {
  if (format !== "cpio") return `rootfs.${format}`;
  return compression === "gzip" ? "rootfs.cpio.gz" : compression === "zstd" ? "rootfs.cpio.zst" : "rootfs.cpio";
}
