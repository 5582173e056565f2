import { mkfsErofsCapabilities, mksquashfsCapabilities, type ImageWriterOptions } from "../formats/image/index.js";
import { resolveImageTool } from "../provision/index.js";
import type { OutputContext } from "./output.js";

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
