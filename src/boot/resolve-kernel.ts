import { mkdir, realpath, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { A3sError } from "../errors.js";
import { debianKernel } from "./debian-kernel.js";
import { GUEST_MODULES, type KernelBundle } from "./kernel-bundle.js";
import { findMicrovmKernel, listMicrovmKernels, microvmKernelBundle } from "./microvm-kernel-cache.js";
import { indexModules } from "./module-set.js";
import { selectModules } from "./select-modules.js";

/**
 * The kernel for a run, first match wins:
 * 1. `--kernel FILE [--modules DIR]`, or `--kernel debian` / `--kernel
 *    microvm` to ask for one of the two below by name (a file with one of
 *    those names is given as `./debian`);
 * 2. the microVM kernel `a3s-rootfs kernel build` made from this package's
 *    config fragments, when one is cached (drivers built in, no modules,
 *    several times faster to boot);
 * 3. the Debian kernel of the host's release (fetched and cached on first
 *    use), with the modules the guest needs.
 * The progress line says which, and why. A kernel with its drivers built in
 * needs no modules directory.
 */
export async function resolveKernel(opts: {
  kernel?: string | undefined;
  modules?: string | undefined;
  /** A directory that lives as long as the run: user modules are decompressed into it. */
  workDir: string;
  progress?: (m: string) => void;
}): Promise<KernelBundle> {
  const progress = opts.progress ?? (() => {});
  if (opts.kernel === "debian" || opts.kernel === "microvm") {
    if (opts.modules !== undefined) throw new A3sError("EUSAGE", `--modules needs --kernel FILE, not --kernel ${opts.kernel}`);
    if (opts.kernel === "debian") {
      const bundle = await debianKernel({ progress });
      progress(`kernel: ${bundle.origin} (Debian's generic kernel: --kernel debian)`);
      return bundle;
    }
    const built = await findMicrovmKernel();
    if (!built) {
      throw new A3sError("ENOENT", "--kernel microvm: no microVM kernel is built for this version of a3s-rootfs", {
        hint: "a3s-rootfs kernel build",
      });
    }
    progress(`kernel: ${built.origin} (${built.release}, the built microVM kernel: --kernel microvm)`);
    return microvmKernelBundle(built);
  }
  if (opts.kernel === undefined) {
    if (opts.modules !== undefined) throw new A3sError("EUSAGE", "--modules needs --kernel");
    const built = await findMicrovmKernel();
    if (built) {
      progress(`kernel: ${built.origin} (${built.release}, the built microVM kernel, no modules; --kernel overrides)`);
      return microvmKernelBundle(built);
    }
    const bundle = await debianKernel({ progress });
    progress(`kernel: ${bundle.origin} (Debian's generic kernel: no microVM kernel is built; a3s-rootfs kernel build makes one)`);
    return bundle;
  }
  if (!(await stat(opts.kernel).then((s) => s.isFile(), () => false))) {
    throw new A3sError("ENOENT", `the kernel ${opts.kernel} does not exist`, { subject: opts.kernel });
  }
  if (opts.modules === undefined) {
    // A built kernel named by path is still reported as what it is.
    const real = await realpath(opts.kernel);
    const built = (await listMicrovmKernels()).find((k) => k.path === real);
    progress(`kernel: ${opts.kernel} (--kernel${built ? `: ${built.origin}` : ""})`);
    if (built) return microvmKernelBundle(built);
    return { release: basename(opts.kernel), origin: `file:${opts.kernel}`, kernelPath: opts.kernel, modules: [] };
  }
  progress(`kernel: ${opts.kernel} (--kernel, with --modules ${opts.modules})`);
  // Only the modules the guest needs are copied, decompressed, for this run.
  const dest = join(opts.workDir, "modules");
  await mkdir(dest);
  const modules = await selectModules(await indexModules(opts.modules), GUEST_MODULES, dest);
  return { release: basename(opts.kernel), origin: `file:${opts.kernel}`, kernelPath: opts.kernel, modules };
}
