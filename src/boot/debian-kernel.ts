import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, copyFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { A3sError } from "../errors.js";
import { cacheRoot } from "../util/cache-dir.js";
import { requireTool, runTool } from "../util/host-tool.js";
import { writeFileAtomic } from "../util/write-file-atomic.js";
import { debianKernelPackage } from "./debian-kernel-package.js";
import { extractVmlinux, pvhEntryPoint } from "./extract-vmlinux.js";
import { debianKernelOrigin, GUEST_MODULES, type KernelBundle } from "./kernel-bundle.js";
import { indexModules } from "./module-set.js";
import { selectModules } from "./select-modules.js";

export interface DebianKernelOptions {
  readonly cacheDir?: string;
  readonly progress?: (message: string) => void;
  /** Only look in the cache; never download. */
  readonly offline?: boolean;
}

/**
 * The Debian generic kernel matching the host's release, with the modules the
 * guest needs. Downloaded with `apt-get download` (never installed: the host's
 * /boot is not touched) and cached per package version; a cached bundle is
 * used as is. The bundle directory appears in the cache only when complete.
 */
export async function debianKernel(opts: DebianKernelOptions = {}): Promise<KernelBundle> {
  const progress = opts.progress ?? (() => {});
  const pkg = await debianKernelPackage(opts.cacheDir !== undefined ? { cacheDir: opts.cacheDir } : {});
  const kernelsDir = join(opts.cacheDir ?? cacheRoot(), "kernels");
  // Keyed by the module selection too: a bundle keeps only the modules the
  // guest needed when it was made, so a guest that needs more gets a new one.
  const bundleDir = join(kernelsDir, `${pkg.name}_${pkg.version}_m${moduleSelectionKey()}`);
  const cached = await readBundle(bundleDir, progress);
  if (cached) return cached;
  if (opts.offline) {
    throw new A3sError("EKERNEL", `the kernel ${pkg.name} ${pkg.version} is not in the cache ${kernelsDir}`, {
      hint: "run: a3s-rootfs kernel --fetch",
    });
  }

  await mkdir(kernelsDir, { recursive: true });
  const work = await mkdtemp(join(kernelsDir, ".fetch-"));
  try {
    progress(`downloading ${pkg.name} ${pkg.version} with apt-get download`);
    await runTool(requireTool("apt-get", "apt"), ["download", `${pkg.name}=${pkg.version}`], { cwd: work });
    const deb = (await readdir(work)).find((n) => n.endsWith(".deb"));
    if (!deb) throw new A3sError("EKERNEL", `apt-get download produced no .deb for ${pkg.name}`);
    progress(`unpacking ${deb}`);
    const unpacked = join(work, "unpacked");
    await runTool(requireTool("dpkg-deb", "dpkg"), ["-x", join(work, deb), unpacked]);
    const release = (await readdir(join(unpacked, "lib", "modules")))[0];
    const image = (await readdir(join(unpacked, "boot"))).find((n) => n.startsWith("vmlinuz-"));
    if (!release || !image) throw new A3sError("EKERNEL", `${deb} has no kernel image or modules`, { subject: deb });

    const staged = join(work, "bundle");
    await mkdir(join(staged, "modules"), { recursive: true });
    await copyFile(join(unpacked, "boot", image), join(staged, "vmlinuz"));
    const set = await indexModules(join(unpacked, "lib", "modules", release));
    const modules = await selectModules(set, GUEST_MODULES, join(staged, "modules"));
    progress(`selected ${modules.length} modules: ${modules.map((m) => m.name).join(" ")}`);
    const { boot } = await writeBootKernel(staged, progress);
    const manifest: BundleManifest = {
      release,
      origin: debianKernelOrigin(pkg),
      modules: modules.map((m) => ({ name: m.name, depends: m.depends })),
      boot,
    };
    await writeFile(join(staged, "bundle.json"), JSON.stringify(manifest, null, 2) + "\n");
    // Publish the finished bundle in one rename; a concurrent fetch that lost
    // the race finds the directory already there and uses it.
    await rename(staged, bundleDir).catch(async (e: NodeJS.ErrnoException) => {
      if (e.code !== "ENOTEMPTY" && e.code !== "EEXIST") throw e;
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const bundle = await readBundle(bundleDir);
  if (!bundle) throw new A3sError("EKERNEL", `the kernel bundle in ${bundleDir} is incomplete`, { subject: bundleDir });
  return bundle;
}

/** A short digest of GUEST_MODULES, the selection a bundle keeps. */
function moduleSelectionKey(): string {
  return createHash("sha256").update(GUEST_MODULES.join("\n")).digest("hex").slice(0, 8);
}

/** bundle.json: what the bundle directory holds. */
interface BundleManifest {
  release: string;
  origin: string;
  modules: { name: string; depends: string[] }[];
  /** Which image QEMU boots; absent in bundles fetched before vmlinux extraction existed. */
  boot?: BootKernel;
}

type BootKernel =
  | { image: "vmlinux"; compression: string; pvhEntry: string }
  | { image: "vmlinuz"; why: string };

async function readBundle(dir: string, progress: (m: string) => void = () => {}): Promise<KernelBundle | undefined> {
  const raw = await readFile(join(dir, "bundle.json"), "utf8").catch(() => undefined);
  if (raw === undefined) return undefined;
  const m = JSON.parse(raw) as BundleManifest;
  if (!Array.isArray(m.modules) || m.modules.some((x) => typeof x !== "object")) return undefined; // an older layout: refetch
  const vmlinuxGone = m.boot?.image === "vmlinux" && !(await stat(join(dir, "vmlinux")).then((st) => st.isFile(), () => false));
  if (!m.boot || vmlinuxGone) {
    // A bundle cached before vmlinux extraction (or whose vmlinux was
    // deleted): add the vmlinux now rather than downloading the package again.
    const { boot, lasting } = await writeBootKernel(dir, progress);
    m.boot = boot;
    // Not recorded in a cache this process cannot write: the next run decides again.
    if (lasting) await writeFileAtomic(join(dir, "bundle.json"), JSON.stringify(m, null, 2) + "\n").catch(() => {});
  }
  const bzImage = join(dir, "vmlinuz");
  return {
    release: m.release,
    origin: m.origin,
    ...(m.boot.image === "vmlinux" ? { kernelPath: join(dir, "vmlinux"), bzImagePath: bzImage } : { kernelPath: bzImage }),
    modules: m.modules.map((x) => ({ name: x.name, depends: x.depends, path: join(dir, "modules", `${x.name}.ko`) })),
  };
}

/**
 * Extracts the bundle's bzImage into `vmlinux` beside it when the kernel has
 * a PVH entry point, so QEMU boots it without firmware-side loading and
 * in-guest decompression (several seconds under TCG). Without the PVH note
 * QEMU cannot boot the ELF, so the bzImage stays the boot image; so it does
 * when extraction fails, the reason recorded in bundle.json. A missing
 * decompressor is not `lasting`: once it is installed, the next run extracts.
 */
async function writeBootKernel(dir: string, progress: (m: string) => void): Promise<{ boot: BootKernel; lasting: boolean }> {
  let extracted;
  try {
    extracted = await extractVmlinux(join(dir, "vmlinuz"));
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    progress(`booting the bzImage: ${message}`);
    return { boot: { image: "vmlinuz", why: message }, lasting: !(e instanceof A3sError && e.code === "ETOOL") };
  }
  const entry = pvhEntryPoint(extracted.vmlinux);
  if (entry === undefined) {
    progress("booting the bzImage: the kernel has no PVH entry note (CONFIG_PVH is off), so QEMU cannot boot its ELF");
    return { boot: { image: "vmlinuz", why: "no XEN_ELFNOTE_PHYS32_ENTRY note (CONFIG_PVH=n)" }, lasting: true };
  }
  try {
    await writeFileAtomic(join(dir, "vmlinux"), extracted.vmlinux);
  } catch (e) {
    // A cache this process cannot write (shared, read-only): boot the bzImage rather than fail.
    progress(`booting the bzImage: cannot write the vmlinux into ${dir}: ${(e as Error).message}`);
    return { boot: { image: "vmlinuz", why: `cannot write vmlinux: ${(e as Error).message}` }, lasting: false };
  }
  progress(`extracted vmlinux (${extracted.compression}, ${extracted.vmlinux.length} bytes; PVH entry 0x${entry.toString(16)})`);
  return { boot: { image: "vmlinux", compression: extracted.compression, pvhEntry: `0x${entry.toString(16)}` }, lasting: true };
}
