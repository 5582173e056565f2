import { open } from "node:fs/promises";
import { readErofsImage } from "./erofs-reader.js";
import { readExt4Image } from "./ext4-reader.js";
import type { ImageTree } from "./image-tree.js";
import { readSquashfsImage } from "./squashfs-reader.js";

export type ImageFormat = "ext4" | "erofs" | "squashfs";

/**
 * The filesystem an image file holds, from its magic numbers (never from its
 * name): squashfs "hsqs" at 0, erofs 0xE0F5E1E2 at 1024, ext2/3/4 0xEF53 at
 * 1024 + 56. Undefined for anything else.
 */
export async function detectImageFormat(path: string): Promise<ImageFormat | undefined> {
  const fh = await open(path, "r");
  try {
    const head = Buffer.alloc(1024 + 64);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    if (bytesRead >= 4 && head.readUInt32LE(0) === 0x73717368) return "squashfs";
    if (bytesRead >= 1028 && head.readUInt32LE(1024) === 0xe0f5e1e2) return "erofs";
    if (bytesRead >= 1024 + 58 && head.readUInt16LE(1024 + 56) === 0xef53) return "ext4";
    return undefined;
  } finally {
    await fh.close();
  }
}

export interface ImageReadOptions {
  /**
   * squashfs only: whether this process may recreate the image exactly on
   * disk (root), which is how its xattrs are read. Defaults to "running as root".
   */
  readonly privileged?: boolean;
}

/** Reads a filesystem image of a known format into a tree. */
export function readImageTree(path: string, format: ImageFormat, opts: ImageReadOptions = {}): Promise<ImageTree> {
  switch (format) {
    case "ext4":
      return readExt4Image(path);
    case "erofs":
      return readErofsImage(path);
    case "squashfs":
      return readSquashfsImage(path, opts);
  }
}
