import { readErofsImage } from "./erofs/index.js";
import { readExt4Image } from "./ext4/index.js";
import type { ImageTree } from "./image/index.js";
import { readSquashfsImage } from "./squashfs/index.js";

/** The filesystem images this project reads into a tree. */
export type ImageFormat = "ext4" | "erofs" | "squashfs";

export function isImageFormat(format: string | undefined): format is ImageFormat {
  return format === "ext4" || format === "erofs" || format === "squashfs";
}

export interface ImageReadOptions {
  /**
   * squashfs only: whether this process may recreate the image exactly on
   * disk (root), which is how its xattrs are read. Defaults to "running as root".
   */
  readonly privileged?: boolean;
}

/** Reads a filesystem image of a known format (see detect.ts) into a tree, without mounting it. */
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
