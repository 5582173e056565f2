import { stat } from "node:fs/promises";
import type { ImageToolName } from "../provision/index.js";
import { findExecutable } from "../util/host-tool.js";
import type { OutputFormat } from "./output.js";

/**
 * Which programs would write `format`, as one string for the build cache's
 * key, found without running anything (a cache hit runs no tool, so this
 * must cost next to nothing): for each host program its path, size and
 * mtime (an upgrade changes them even when the version string stays), and
 * for erofs and squashfs also the newest Debian 13 bundle in the cache (its
 * name holds every package version), since that is what the writer runs
 * where the host's cannot read tar. tar, cpio and ext4 are written by
 * a3s-rootfs itself (ext4's e2fsck only checks the image): its version is
 * in the key already.
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
    // The provisioning code loads only for the formats it provisions tools for (CLI start time).
    const { imageToolKind, listBundles } = await import("../provision/index.js");
    const newest = (await listBundles(cacheDir, imageToolKind(tool)))[0];
    return newest ? newest.dir.split("/").pop() ?? "" : "none";
  };
  switch (format) {
    case "erofs":
      return `${await host("mkfs.erofs")} ${await bundle("mkfs.erofs")}`;
    case "squashfs":
      return `${await host("mksquashfs")} ${await bundle("mksquashfs")}`;
    default:
      return "";
  }
}
