import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { A3sError } from "../errors.js";
import { packageRoot } from "../util/package-root.js";

/**
 * The microVM kernel's own source patches, kept in kernel/patches/*.patch:
 * small changes to Debian's linux-source that make the kernel boot faster
 * in a3s-rootfs's VMs (each patch's header says why). `kernel build`
 * applies them in name order to the unpacked tree before configuring, and
 * each patch's name and bytes are part of the kernel's cache key, so a
 * changed patch builds a new kernel.
 */

export interface KernelPatch {
  /** The file name, e.g. "0001-lapic-timer-period-param.patch": the order they apply in. */
  readonly name: string;
  readonly path: string;
  /** sha256 of the patch file: what the cache key holds. */
  readonly sha256: string;
}

/** The directory of the patches shipped with this package (from the package root, so it works installed and bundled). */
export function kernelPatchesDir(): string {
  return join(packageRoot(), "kernel", "patches");
}

/** The *.patch files in `dir`, in name order; none when the directory does not exist. */
export async function loadKernelPatches(dir: string = kernelPatchesDir()): Promise<KernelPatch[]> {
  const names = await readdir(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return [] as string[];
    throw new A3sError("EKERNEL", `cannot read the kernel patches in ${dir}: ${e.message}`, { subject: dir });
  });
  const patches = names.filter((n) => n.endsWith(".patch")).sort();
  return Promise.all(
    patches.map(async (name) => {
      const path = join(dir, name);
      return { name, path, sha256: createHash("sha256").update(await readFile(path)).digest("hex") };
    }),
  );
}

/**
 * The arguments of `patch` that apply one patch to the source tree `srcDir`:
 * exactly (no fuzz, so a patch that no longer fits a new source version
 * fails instead of landing somewhere else), once (--forward refuses a patch
 * already applied), without questions or backup files.
 */
export function patchArgs(patch: KernelPatch, srcDir: string): string[] {
  return ["-p1", "--forward", "--batch", "--fuzz=0", "--no-backup-if-mismatch", "-d", srcDir, "-i", patch.path];
}
