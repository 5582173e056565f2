import { A3sError, isA3sError } from "../errors.js";
import { openArchiveTree } from "../formats/open-archive.js";
import type { BootImageKind } from "./image-kind.js";

/**
 * Fails before anything boots when the kernel would find no init in the
 * image: without this, a missing init shows up as a kernel panic, cut off
 * in the console log, far from its cause.
 *
 * Only an initramfs (cpio) needs one of its own: the kernel runs /init from
 * it (rdinit's default), and with none it panics trying to mount a root.
 * A rootfs directory is checked where it is packed (boot-media.ts). A disk
 * image (ext4, erofs, squashfs) boots through an initramfs this tool makes
 * with the A3S init, which mounts the image and stays PID 1: the image's
 * own /sbin/init is never run, so there is nothing to check.
 *
 * The check reads the archive's headers, not its contents, and looks up one
 * path, following the image's symlinks (/init -> sbin/init).
 */
export async function requireInitramfsInit(kind: BootImageKind, image: string): Promise<void> {
  if (kind !== "cpio") return;
  const archive = await openArchiveTree(image).catch((e: unknown) => {
    // An initramfs this reader does not take apart (several compressed
    // archives concatenated, as with early microcode) may still boot: it
    // cannot be judged here, so the kernel decides. A damaged one is refused.
    if (isA3sError(e, "EUNSUPPORTED")) return undefined;
    throw e;
  });
  if (!archive) return;
  try {
    const init = archive.tree.lookup("/init");
    if (init?.kind === "file" && (init.mode & 0o111) !== 0) return;
    const sbinInit = archive.tree.lookup("/sbin/init");
    const why =
      init?.kind === "file"
        ? "its /init is not executable"
        : init
          ? `its /init is a ${init.kind}, not a program`
          : sbinInit
            ? "it has /sbin/init but no /init, and /init is what the kernel runs from an initramfs"
            : "it has no /init (and no /sbin/init)";
    throw new A3sError("EIMAGE", `${image} cannot boot: ${why}, so the kernel would find no init to run`, {
      subject: image,
      hint: "build it with a3s-rootfs build (the A3S init and its /init link are included unless --no-init is given)",
    });
  } finally {
    await archive.dispose();
  }
}
