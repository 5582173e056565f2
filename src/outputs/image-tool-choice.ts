import { stat } from "node:fs/promises";
import { mke2fsCapabilities, mkfsErofsCapabilities, mksquashfsCapabilities, type ImageWriterOptions } from "../formats/image/index.js";
import { resolveImageTool } from "../provision/index.js";
import { findExecutable, hostCommand, type ToolCommand } from "../util/host-tool.js";
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
 * key: each tool's version as it reports it, and for the host's programs
 * also the file's size and mtime (a rebuilt package may keep its version
 * string). tar and cpio are written by a3s-rootfs itself: its version is in
 * the key already.
 */
export async function toolIdentity(format: OutputFormat, ctx: OutputContext): Promise<string> {
  const describe = async (cmd: ToolCommand | undefined, version: string): Promise<string> => {
    if (!cmd) return "none";
    if (cmd.origin === "cache") return `${version} ${cmd.label}`;
    const st = await stat(cmd.file).catch(() => undefined);
    return `${version} ${cmd.file} ${st?.size ?? 0} ${st?.mtimeMs ?? 0}`;
  };
  switch (format) {
    case "erofs": {
      const cmd = (await chooseImageTools("erofs", ctx))?.["mkfs.erofs"] ?? hostTool("mkfs.erofs");
      return `mkfs.erofs ${await describe(cmd, cmd ? (await mkfsErofsCapabilities(cmd)).version : "")}`;
    }
    case "squashfs": {
      const cmd = (await chooseImageTools("squashfs", ctx))?.mksquashfs ?? hostTool("mksquashfs");
      return `mksquashfs ${await describe(cmd, cmd ? (await mksquashfsCapabilities(cmd)).version : "")}`;
    }
    case "ext4": {
      const mke2fs = hostTool("mke2fs");
      const debugfs = hostTool("debugfs");
      return `mke2fs ${await describe(mke2fs, mke2fs ? (await mke2fsCapabilities(mke2fs)).version : "")} debugfs ${await describe(debugfs, "")}`;
    }
    default:
      return "";
  }
}

function hostTool(name: string): ToolCommand | undefined {
  const path = findExecutable(name);
  return path ? hostCommand(path) : undefined;
}
