import { stat } from "node:fs/promises";
import { mkfsErofsCapabilities, mksquashfsCapabilities, type ImageWriterOptions } from "../formats/image/index.js";
import { imageToolKind, listBundles, resolveImageTool, type ImageToolName } from "../provision/index.js";
import { findExecutable } from "../util/host-tool.js";
import type { OutputContext, OutputFormat } from "./output.js";

/**
 * The mkfs programs an erofs or squashfs output runs, chosen for speed: the
 * host's where it reads a tar stream (erofs-utils >= 1.7, squashfs-tools >=
 * 4.6), else Debian 13's copy in the cache, provisioned on first use, so the
 * image is made from the tree's tar stream with no staging copy on disk.
 * Without `ctx.toolCache` (a writer called on its own) the host's are used.
 */
export async function chooseImageTools(format: "erofs" | "squashfs", ctx: OutputContext): Promise<ImageWriterOptions["tools"]> {
  const cache = ctx.toolCache;
  if (!cache) return undefined;
  const common = { cache: cache.dir, provision: cache.provision, warn: ctx.warn, ...(cache.progress ? { progress: cache.progress } : {}) };
  if (format === "erofs") {
    const tool = await resolveImageTool("mkfs.erofs", { ...common, hostIsEnough: async (host) => (await mkfsErofsCapabilities(host)).tarInput });
    return { "mkfs.erofs": tool };
  }
  const tool = await resolveImageTool("mksquashfs", { ...common, hostIsEnough: async (host) => (await mksquashfsCapabilities(host)).tarInput });
  return { mksquashfs: tool };
}

/**
 * Which programs would write `format`, as one string for the build cache's
 * key, found without running anything (a cache hit runs no tool, so this
 * must cost next to nothing): for each host program its path, size and
 * mtime (an upgrade changes them even when the version string stays), and
 * for erofs and squashfs also the newest Debian 13 bundle in the cache (its
 * name holds every package version), since that is what the writer runs
 * where the host's cannot read tar. tar and cpio are written by a3s-rootfs
 * itself: its version is in the key already.
 */
export async function toolIdentity(format: OutputFormat, cacheDir: string | undefined): Promise<string> {
  const host = async (name: string): Promise<string> => {
    const path = findExecutable(name);
    if (!path) return `${name}:none`;
    const st = await stat(path).catch(() => undefined);
    return `${name}:${path}:${st?.size ?? 0}:${st?.mtimeMs ?? 0}`;
  };
  const bundle = async (tool: ImageToolName): Promise<string> => {
    if (!cacheDir) return "no-cache";
    const newest = (await listBundles(cacheDir, imageToolKind(tool)))[0];
    return newest ? newest.dir.split("/").pop() ?? "" : "none";
  };
  switch (format) {
    case "erofs":
      return `${await host("mkfs.erofs")} ${await bundle("mkfs.erofs")}`;
    case "squashfs":
      return `${await host("mksquashfs")} ${await bundle("mksquashfs")}`;
    case "ext4":
      return `${await host("mke2fs")} ${await host("debugfs")}`;
    default:
      return "";
  }
}
