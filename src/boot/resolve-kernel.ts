import { mkdir, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { A3sError } from "../errors.js";
import { debianKernel } from "./debian-kernel.js";
import { GUEST_MODULES, type KernelBundle } from "./kernel-bundle.js";
import { indexModules } from "./module-set.js";
import { selectModules } from "./select-modules.js";

/**
 * The kernel for a run: `--kernel FILE [--modules DIR]`, or by default the
 * Debian kernel of the host's release (fetched and cached on first use). A
 * kernel with its drivers built in needs no modules directory.
 */
export async function resolveKernel(opts: {
  kernel?: string | undefined;
  modules?: string | undefined;
  /** A directory that lives as long as the run: user modules are decompressed into it. */
  workDir: string;
  progress?: (m: string) => void;
}): Promise<KernelBundle> {
  if (opts.kernel === undefined) {
    if (opts.modules !== undefined) throw new A3sError("EUSAGE", "--modules needs --kernel");
    return debianKernel({ progress: opts.progress ?? (() => {}) });
  }
  if (!(await stat(opts.kernel).then((s) => s.isFile(), () => false))) {
    throw new A3sError("ENOENT", `the kernel ${opts.kernel} does not exist`, { subject: opts.kernel });
  }
  if (opts.modules === undefined) {
    return { release: basename(opts.kernel), origin: `file:${opts.kernel}`, kernelPath: opts.kernel, modules: [] };
  }
  // Only the modules the guest needs are copied, decompressed, for this run.
  const dest = join(opts.workDir, "modules");
  await mkdir(dest);
  const modules = await selectModules(await indexModules(opts.modules), GUEST_MODULES, dest);
  return { release: basename(opts.kernel), origin: `file:${opts.kernel}`, kernelPath: opts.kernel, modules };
}
