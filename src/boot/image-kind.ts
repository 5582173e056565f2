import { stat } from "node:fs/promises";
import { A3sError } from "../errors.js";
import { detectFileFormat } from "../formats/detect.js";

export type BootImageKind = "cpio" | "ext4" | "erofs" | "squashfs" | "dir";

/**
 * What `run IMAGE` was given, told by magic numbers (formats/detect.ts)
 * rather than file names: a cpio initramfs (plain newc, gzip or zstd), an
 * ext4, erofs or squashfs image, or a rootfs directory.
 */
export async function detectBootImage(path: string): Promise<BootImageKind> {
  const st = await stat(path).catch(() => undefined);
  if (!st) throw new A3sError("ENOENT", `${path} does not exist`, { subject: path });
  if (st.isDirectory()) return "dir";
  const format = await detectFileFormat(path);
  switch (format) {
    case "newc":
    case "gzip": // a compressed initramfs is the only compressed image we boot
    case "zstd":
      return "cpio";
    case "ext4":
    case "erofs":
    case "squashfs":
      return format;
    default:
      throw new A3sError("EIMAGE", `${path} is not a rootfs this tool can boot`, {
        subject: path,
        hint: "give a cpio initramfs (.cpio, .cpio.gz, .cpio.zst), an ext4, erofs or squashfs image, or a rootfs directory",
      });
  }
}
