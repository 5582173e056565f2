import { mkdir, mkdtemp, readdir, readFile, rename, rm, copyFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { A3sError } from "../errors.js";
import { cacheRoot } from "../util/cache-dir.js";
import { requireTool, runTool } from "../util/host-tool.js";
import { GUEST_MODULES, type KernelBundle } from "./kernel-bundle.js";
import { indexModules } from "./module-set.js";
import { selectModules } from "./select-modules.js";

export interface DebianKernelOptions {
  readonly cacheDir?: string;
  readonly progress?: (message: string) => void;
  /** Only look in the cache; never download. */
  readonly offline?: boolean;
}

/** The Debian kernel package the host's release would install: what linux-image-ARCH depends on. */
export async function debianKernelPackage(): Promise<{ name: string; version: string }> {
  requireTool("apt-cache", "apt");
  const arch = (await runTool(requireTool("dpkg", "dpkg"), ["--print-architecture"])).stdout.trim();
  const meta = `linux-image-${arch}`;
  const deps = (await runTool("apt-cache", ["depends", "--no-recommends", "--no-suggests", meta]).catch(() => undefined))?.stdout ?? "";
  const name = /Depends: (linux-image-[^\s|]+)/.exec(deps)?.[1];
  if (!name) {
    throw new A3sError("EKERNEL", `apt does not know the package ${meta}, so the Debian kernel cannot be found`, {
      subject: meta,
      hint: "run apt-get update, or pass --kernel FILE",
    });
  }
  const show = (await runTool("apt-cache", ["show", "--no-all-versions", name])).stdout;
  const version = /^Version: (\S+)/m.exec(show)?.[1];
  if (!version) throw new A3sError("EKERNEL", `apt has no version of ${name}`, { subject: name });
  return { name, version };
}

/**
 * The Debian generic kernel matching the host's release, with the modules the
 * guest needs. Downloaded with `apt-get download` (never installed: the host's
 * /boot is not touched) and cached per package version; a cached bundle is
 * used as is. The bundle directory appears in the cache only when complete.
 */
export async function debianKernel(opts: DebianKernelOptions = {}): Promise<KernelBundle> {
  const progress = opts.progress ?? (() => {});
  const pkg = await debianKernelPackage();
  const kernelsDir = join(opts.cacheDir ?? cacheRoot(), "kernels");
  const bundleDir = join(kernelsDir, `${pkg.name}_${pkg.version}`);
  const cached = await readBundle(bundleDir);
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
    const manifest = {
      release,
      origin: `debian:${pkg.name}=${pkg.version}`,
      modules: modules.map((m) => ({ name: m.name, depends: m.depends })),
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

async function readBundle(dir: string): Promise<KernelBundle | undefined> {
  const raw = await readFile(join(dir, "bundle.json"), "utf8").catch(() => undefined);
  if (raw === undefined) return undefined;
  const m = JSON.parse(raw) as { release: string; origin: string; modules: { name: string; depends: string[] }[] };
  if (!Array.isArray(m.modules) || m.modules.some((x) => typeof x !== "object")) return undefined; // an older layout: refetch
  return {
    release: m.release,
    origin: m.origin,
    kernelPath: join(dir, "vmlinuz"),
    modules: m.modules.map((x) => ({ name: x.name, depends: x.depends, path: join(dir, "modules", `${x.name}.ko`) })),
  };
}
