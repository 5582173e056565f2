import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { A3sError } from "../errors.js";
import { pumpArchive } from "../formats/archive/index.js";
import { openCompressingFile } from "../formats/compression/index.js";
import { readElfContent } from "../formats/elf/index.js";
import { tarProducer } from "../formats/tar/index.js";
import { GUEST_PROTOCOL_VERSION, readGuestLaunch, type GuestLaunch } from "../layout/index.js";
import { descriptorJson, jsonBlob, type LocalImage } from "../oci/local-image.js";
import type { Descriptor } from "../oci/manifest.js";
import { OCI_CONFIG, OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD, OCI_MANIFEST, type LayerCompression } from "../oci/media-types.js";
import { hostPlatform, type Platform } from "../oci/platform.js";
import type { RootfsTree } from "../tree/index.js";
import { AGENT_LABEL, LAYOUT_VERSION_LABEL } from "./image-labels.js";


export interface OciImageOptions {
  /** SOURCE_DATE_EPOCH: the config's `created` time. */
  readonly epoch: number;
  /** How the one layer is compressed (default gzip: every registry and runtime reads it). */
  readonly compression?: LayerCompression;
  /** Where the layer file is written; it is named by its digest's hex there, as an OCI layout wants. */
  readonly layerDir: string;
  readonly signal?: AbortSignal;
}

const LAYER_MEDIA_TYPE: Readonly<Record<LayerCompression, string>> = { none: OCI_LAYER_TAR, gzip: OCI_LAYER_GZIP, zstd: OCI_LAYER_ZSTD };

/**
 * The rootfs as a one-layer OCI image: the tree as this project's own tar
 * (reproducible: same tree, same bytes), compressed as asked, and a config
 * that says how to run it the way the guest's init would. Same tree and same
 * epoch give the same layer, config and manifest digests:
 * - gzip comes from Node's zlib with no name and mtime 0 in its header, and
 *   the header's OS byte is set to 3 (Unix) whatever zlib was built for;
 * - zstd comes from the same route as the project's .zst outputs (the CLI
 *   with -T0, whose output does not depend on the thread count);
 * - the config's `created` is the epoch and nothing else in it varies.
 *
 * The config's Entrypoint is the agent with its baked-in arguments, and its
 * Env, User and WorkingDir are the guest config's (docs/guest-protocol.md
 * §3), so `docker run` of the image starts what the microVM would. Its
 * architecture is the agent's (from its ELF header), else the host's.
 */
export async function writeOciImage(tree: RootfsTree, opts: OciImageOptions): Promise<LocalImage> {
  const compression = opts.compression ?? "gzip";
  const layer = await writeLayer(tree, opts.layerDir, compression, opts.signal);
  const launch = await readGuestLaunch(tree);
  const platform = await imagePlatform(tree, launch);
  const created = rfc3339(opts.epoch);
  const config = jsonBlob(OCI_CONFIG, {
    created,
    architecture: platform.architecture,
    ...(platform.variant ? { variant: platform.variant } : {}),
    os: platform.os,
    config: containerConfig(launch),
    rootfs: { type: "layers", diff_ids: [layer.diffId] },
    history: [{ created, created_by: "a3s-rootfs build" }],
  });
  const layerDescriptor: Descriptor = { mediaType: LAYER_MEDIA_TYPE[compression], digest: layer.digest, size: layer.size };
  const manifest = jsonBlob(OCI_MANIFEST, {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: descriptorJson(config.descriptor),
    layers: [descriptorJson(layerDescriptor)],
  });
  return {
    manifest: { descriptor: { ...manifest.descriptor, platform: { os: platform.os, architecture: platform.architecture, ...(platform.variant ? { variant: platform.variant } : {}) } }, bytes: manifest.bytes },
    blobs: [config, { descriptor: layerDescriptor, path: layer.path }],
  };
}

/** The image config's `config`: how a container of this image starts. */
function containerConfig(launch: GuestLaunch | undefined): Record<string, unknown> {
  const labels = { [LAYOUT_VERSION_LABEL]: String(GUEST_PROTOCOL_VERSION), ...(launch ? { [AGENT_LABEL]: launch.agent } : {}) };
  if (!launch) return { Labels: labels };
  return {
    User: launch.user,
    ...(launch.env.length > 0 ? { Env: [...launch.env] } : {}),
    Entrypoint: [launch.agent, ...launch.args],
    WorkingDir: launch.cwd,
    Labels: labels,
  };
}

/** ELF e_machine → OCI architecture, for the machines ELF_MACHINES knows. */
const ELF_TO_OCI_ARCH: Readonly<Record<number, string>> = { 62: "amd64", 183: "arm64", 3: "386", 40: "arm", 243: "riscv64" };

/** The platform a rootfs is for: its agent's architecture when the agent's ELF header says, else the host's. */
export async function imagePlatform(tree: RootfsTree, launch: GuestLaunch | undefined): Promise<Platform> {
  const host = hostPlatform();
  if (!launch) return host;
  let inode;
  try {
    inode = tree.lookup(launch.agent);
  } catch {
    return host;
  }
  if (inode?.kind !== "file") return host;
  const elf = await readElfContent(inode.content, launch.agent).catch(() => undefined);
  const arch = elf ? ELF_TO_OCI_ARCH[elf.machine] : undefined;
  if (!arch || arch === host.architecture) return host;
  return { os: "linux", architecture: arch };
}

/** "1970-01-01T00:00:00Z" for epoch 0. */
function rfc3339(epoch: number): string {
  return new Date(epoch * 1000).toISOString().replace(/\.000Z$/, "Z");
}

interface WrittenLayer {
  readonly path: string;
  readonly digest: string;
  readonly diffId: string;
  readonly size: number;
}

/** Byte 9 of a gzip header: the OS that wrote it. */
const GZIP_OS_OFFSET = 9;
const GZIP_OS_UNIX = 3;

/**
 * Writes the tree's tar, compressed, into `dir`, hashing the tar (the
 * diff_id) as it is produced, then hashes the file (the digest) and renames
 * it to its digest's hex.
 */
async function writeLayer(tree: RootfsTree, dir: string, compression: LayerCompression, signal: AbortSignal | undefined): Promise<WrittenLayer> {
  const tmp = join(dir, `.layer-${process.pid}-${randomBytes(6).toString("hex")}`);
  const diff = createHash("sha256");
  const producer = tarProducer(tree);
  try {
    if (compression === "none") {
      const file = await open(tmp, "w");
      try {
        await pumpArchive(producer, async (chunk) => {
          signal?.throwIfAborted();
          diff.update(chunk);
          let done = 0;
          while (done < chunk.length) done += (await file.write(chunk, done, chunk.length - done)).bytesWritten;
        });
      } finally {
        await file.close();
      }
    } else {
      const file = await openCompressingFile(tmp, compression);
      try {
        await pumpArchive(producer, (chunk) => {
          signal?.throwIfAborted();
          // Hashed in the order the chunks are produced, before the compressor lets go of them.
          diff.update(chunk);
          return new Promise<void>((resolve, reject) => file.input.write(chunk, (e) => (e ? reject(e) : resolve())));
        });
        await new Promise<void>((resolve) => file.input.end(resolve));
      } catch (e) {
        await file.abort();
        throw e;
      }
      await file.finished();
      if (compression === "gzip") await setGzipOs(tmp);
    }
    const { digest, size } = await hashFile(tmp);
    const path = join(dir, digest.slice("sha256:".length));
    await rename(tmp, path);
    return { path, digest, diffId: `sha256:${diff.digest("hex")}`, size };
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** zlib writes the OS it was built for into the header; a fixed one keeps the digest the same on every host. */
async function setGzipOs(path: string): Promise<void> {
  const file = await open(path, "r+");
  try {
    const header = Buffer.alloc(10);
    await file.read(header, 0, 10, 0);
    if (header[0] !== 0x1f || header[1] !== 0x8b) throw new A3sError("ELAYER", `${path}: the gzip writer did not write a gzip header`, { subject: path });
    await file.write(Buffer.of(GZIP_OS_UNIX), 0, 1, GZIP_OS_OFFSET);
  } finally {
    await file.close();
  }
}

/** The sha256 digest and size of a file. */
export async function hashFile(path: string): Promise<{ digest: string; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { digest: `sha256:${hash.digest("hex")}`, size };
}
