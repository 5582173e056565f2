import { readFileSync } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { cacheRoot } from "../util/cache-dir.js";
import { configHash, loadKernelConfig } from "./kernel-config.js";
import { loadKernelPatches } from "./kernel-patches.js";
import { lapicTimerPeriod } from "./lapic-timer.js";
import { skipsVirtiofsFlush } from "./virtiofs-flush.js";
import type { KernelBundle } from "./kernel-bundle.js";

/**
 * Built microVM kernels in the user's cache: one directory per source
 * version and config hash, kernels/a3s-microvm_VERSION_HASH16/, holding
 * vmlinux (the PVH ELF QEMU boots), config (the full .config),
 * fragments.config (what was asked) and kernel.json. A directory appears
 * only complete, by one rename, so whatever is listed here can be booted.
 */

/** kernel.json. */
export interface MicrovmKernelManifest {
  readonly format: 1;
  /** The kernel release, `uname -r` in the guest: "6.12.117-a3s-microvm". */
  readonly release: string;
  readonly sourcePackage: string;
  /** The Debian version of the source package: "6.12.117-1~deb12u1". */
  readonly sourceVersion: string;
  /** sha256 of the merged fragments, the source patches and the build recipe (kernel-config.ts configHash). */
  readonly configHash: string;
  readonly fragments: readonly string[];
  readonly bytes: number;
  readonly sha256: string;
  readonly pvhEntry: string;
  /** `gcc --version`'s first line: part of what made these bytes, not of the cache key. */
  readonly compiler: string;
  /** The kernel/patches/*.patch files applied to the source, in order (absent: built before patches existed). */
  readonly patches?: readonly string[];
  /** CONFIG_HZ: the tick rate, which the APIC timer period is counted in (absent in kernels built before it was recorded). */
  readonly hz?: number;
  /** Build steps kbuild reported: the next build's progress estimate. */
  readonly buildSteps: number;
  readonly durationMs: number;
  readonly builtAt: string;
}

export interface MicrovmKernel extends MicrovmKernelManifest {
  readonly dir: string;
  readonly path: string;
  /** "a3s-microvm:6.12.117-1~deb12u1+1a2b3c4d": how runs and listings name it. */
  readonly origin: string;
}

export const MICROVM_KERNEL_PREFIX = "a3s-microvm_";

export function microvmKernelsDir(cacheDir: string = cacheRoot()): string {
  return join(cacheDir, "kernels");
}

/** The cache directory name for a source version and config hash. */
export function microvmKernelDirName(sourceVersion: string, hash: string): string {
  return `${MICROVM_KERNEL_PREFIX}${sourceVersion.replace(/:/g, "%3a")}_${hash.slice(0, 16)}`;
}

export function microvmKernelOrigin(m: Pick<MicrovmKernelManifest, "sourceVersion" | "configHash">): string {
  return `a3s-microvm:${m.sourceVersion}+${m.configHash.slice(0, 8)}`;
}

/** The kernel in `dir`, or undefined when the directory is not a complete kernel. */
export async function readMicrovmKernel(dir: string): Promise<MicrovmKernel | undefined> {
  const raw = await readFile(join(dir, "kernel.json"), "utf8").catch(() => undefined);
  if (raw === undefined) return undefined;
  let m: MicrovmKernelManifest;
  try {
    m = JSON.parse(raw) as MicrovmKernelManifest;
  } catch {
    return undefined;
  }
  if (m.format !== 1 || typeof m.configHash !== "string" || typeof m.sourceVersion !== "string") return undefined;
  const path = join(dir, "vmlinux");
  // A vmlinux of another size was damaged or replaced after publishing.
  if (!(await stat(path).then((s) => s.isFile() && s.size === m.bytes, () => false))) return undefined;
  return { ...m, dir, path, origin: microvmKernelOrigin(m) };
}

/** Every complete built kernel in the cache, the most recently built first. */
export async function listMicrovmKernels(cacheDir: string = cacheRoot()): Promise<MicrovmKernel[]> {
  const root = microvmKernelsDir(cacheDir);
  const names = (await readdir(root).catch(() => [] as string[])).filter((n) => n.startsWith(MICROVM_KERNEL_PREFIX));
  const kernels = (await Promise.all(names.map((n) => readMicrovmKernel(join(root, n))))).filter((k): k is MicrovmKernel => k !== undefined);
  return kernels.sort((a, b) => (a.builtAt < b.builtAt ? 1 : a.builtAt > b.builtAt ? -1 : 0));
}

/**
 * The built kernel a run uses by default: the most recently built one made
 * from this package's fragments (a kernel built from other fragments, by
 * another a3s-rootfs version, may lack what this version's init needs).
 */
export async function findMicrovmKernel(opts: { cacheDir?: string; fragmentsDir?: string; patchesDir?: string } = {}): Promise<MicrovmKernel | undefined> {
  const kernels = await listMicrovmKernels(opts.cacheDir);
  if (kernels.length === 0) return undefined;
  const hash = configHash(await loadKernelConfig(opts.fragmentsDir), await loadKernelPatches(opts.patchesDir));
  return kernels.find((k) => k.configHash === hash);
}

/** A built kernel as a boot bundle: its drivers are built in, so it needs no modules. */
export function microvmKernelBundle(k: Pick<MicrovmKernel, "release" | "origin" | "path" | "patches" | "hz" | "dir">): KernelBundle {
  const period = lapicTimerPeriod(k);
  return {
    release: k.release,
    origin: k.origin,
    kernelPath: k.path,
    modules: [],
    ...(period !== undefined ? { lapicTimerPeriod: period } : {}),
    ...(skipsVirtiofsFlush(k) ? { virtiofsNoFlush: true } : {}),
    ...(bootsWithoutAcpiTables(k.dir) ? { acpiOptional: true } : {}),
  };
}

/**
 * Whether the kernel built in `dir` finds its devices and CPUs without
 * ACPI (KernelBundle.acpiOptional), by the full config kept beside it: a
 * kernel built by an older a3s-rootfs may have been configured otherwise.
 */
function bootsWithoutAcpiTables(dir: string): boolean {
  let config: string;
  try {
    config = readFileSync(join(dir, "config"), "utf8");
  } catch {
    return false;
  }
  return /^CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y$/m.test(config) && /^CONFIG_X86_MPPARSE=y$/m.test(config);
}
