import { open, stat } from "node:fs/promises";
import { A3sError } from "../errors.js";

export type BootImageKind = "cpio" | "ext4" | "erofs" | "squashfs" | "dir";

/**
 * What `run IMAGE` was given, told by magic numbers rather than file names:
 * a cpio initramfs (plain newc, gzip or zstd), an ext4, erofs or squashfs
 * image, or a rootfs directory.
 */
export async function detectBootImage(path: string): Promise<BootImageKind> {
  const st = await stat(path).catch(() => undefined);
  if (!st) throw new A3sError("ENOENT", `${path} does not exist`, { subject: path });
  if (st.isDirectory()) return "dir";
  const fh = await open(path, "r");
  let head: Buffer;
  try {
    head = Buffer.alloc(2048);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    head = head.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
  if (head.subarray(0, 6).toString("latin1") === "070701") return "cpio";
  if (head[0] === 0x1f && head[1] === 0x8b) return "cpio"; // gzip: an initramfs is the only compressed image we boot
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return "cpio"; // zstd
  if (head.subarray(0, 4).toString("latin1") === "hsqs") return "squashfs";
  if (head.length >= 1028 && head.readUInt32LE(1024) === 0xe0f5e1e2) return "erofs";
  if (head.length >= 1082 && head.readUInt16LE(1080) === 0xef53) return "ext4";
  throw new A3sError("EIMAGE", `${path} is not a rootfs this tool can boot`, {
    subject: path,
    hint: "give a cpio initramfs (.cpio, .cpio.gz, .cpio.zst), an ext4, erofs or squashfs image, or a rootfs directory",
  });
}
