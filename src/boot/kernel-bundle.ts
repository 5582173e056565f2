import type { Accelerator } from "./accelerator.js";
import { bootsWithoutAcpi } from "./machine-acpi.js";

/** A kernel ready to boot: its image and the modules the guest init loads, in load order. */
export interface KernelBundle {
  /** Kernel release, e.g. "6.1.0-57-amd64" (or the file name for a user kernel without a known release). */
  readonly release: string;
  /** Where it came from, e.g. "debian:linux-image-6.1.0-57-amd64=6.1.192-3" or "file:/path/vmlinux". */
  readonly origin: string;
  /**
   * The kernel QEMU boots: for the Debian kernel, the uncompressed ELF
   * vmlinux extracted from the bzImage when it has a PVH entry point (QEMU
   * then loads it directly, skipping the firmware's bzImage loader and the
   * in-guest decompression, seconds under TCG); else the bzImage itself.
   */
  readonly kernelPath: string;
  /** The kernel as packaged (the bzImage), for VMMs that need one; absent when it is `kernelPath` itself. */
  readonly bzImagePath?: string;
  /** Uncompressed .ko files, each after the modules it depends on. Empty for kernels with built-in drivers. */
  readonly modules: readonly KernelModule[];
  /**
   * For a microVM kernel built with the lapic-timer patch: the local APIC
   * timer period the host passes under TCG so the kernel skips measuring
   * it (lapic-timer.ts). Absent: the kernel calibrates its timer itself.
   */
  readonly lapicTimerPeriod?: number;
  /** For a microVM kernel built with the virtio-fs patch: closing a file on a share sends no FUSE_FLUSH (virtiofs-flush.ts). */
  readonly virtiofsNoFlush?: boolean;
  /**
   * For a microVM kernel that boots without ACPI: it takes its virtio-mmio
   * devices from the command line and its CPUs from the MP table
   * (CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES, CONFIG_X86_MPPARSE). Whether a boot
   * does is bootsWithoutAcpi's call (machine-acpi.ts).
   */
  readonly acpiOptional?: boolean;
}

const DEBIAN_ORIGIN = "debian:";

/** The origin of Debian's packaged kernel, e.g. "debian:linux-image-6.1.0-57-amd64=6.1.192-3". */
export function debianKernelOrigin(pkg: { readonly name: string; readonly version: string }): string {
  return `${DEBIAN_ORIGIN}${pkg.name}=${pkg.version}`;
}

/** Whether a bundle's origin is Debian's packaged kernel (debianKernelOrigin), whose build options the host knows. */
export function isDebianKernel(origin: string): boolean {
  return origin.startsWith(DEBIAN_ORIGIN);
}

/** What of a kernel bundle its command line depends on (kernelCommandLine's options). */
export function kernelCmdlineOptions(
  kernel: KernelBundle,
  accel: Accelerator,
): { kernelOrigin: string; lapicTimerPeriod?: number; virtiofsNoFlush?: boolean; noAcpi?: boolean } {
  return {
    ...(bootsWithoutAcpi(accel, kernel) ? { noAcpi: true } : {}),
    kernelOrigin: kernel.origin,
    ...(kernel.lapicTimerPeriod !== undefined ? { lapicTimerPeriod: kernel.lapicTimerPeriod } : {}),
    ...(kernel.virtiofsNoFlush ? { virtiofsNoFlush: true } : {}),
  };
}

export interface KernelModule {
  readonly name: string;
  /** An uncompressed .ko file. */
  readonly path: string;
  /** Names of the modules it needs loaded first (from its .modinfo). */
  readonly depends: readonly string[];
}

/**
 * The bundle's modules needed for `names`, dependencies included, in the
 * bundle's load order. Names the bundle lacks (built in, or absent from this
 * kernel) are skipped.
 */
export function modulesFor(bundle: KernelBundle, names: readonly string[]): KernelModule[] {
  const byName = new Map(bundle.modules.map((m) => [m.name, m]));
  const needed = new Set<string>();
  const add = (n: string): void => {
    const m = byName.get(n);
    if (!m || needed.has(n)) return;
    needed.add(n);
    m.depends.forEach(add);
  };
  names.forEach(add);
  return bundle.modules.filter((m) => needed.has(m.name));
}

/**
 * Modules the A3S guest may need: the virtio transports and devices (block,
 * console), virtio-fs with FUSE, 9p with its virtio transport and caching
 * helpers, the read-only root filesystems (erofs, squashfs, ext4 and the
 * checksum driver ext4 asks for), overlayfs, vsock and dm-verity. Dependencies are added
 * from each module's own .modinfo; names a kernel has built in or lacks are
 * skipped.
 */
export const GUEST_MODULES = [
  "virtio_mmio",
  "virtio_pci",
  "virtio_blk",
  "virtio_console",
  "fuse",
  "virtiofs",
  "9pnet_virtio",
  "9p",
  // Before erofs and ext4: their libcrc32c asks for a crc32c implementation
  // only as a soft dependency, which .modinfo names by alias, not by module.
  "crc32c_generic",
  "erofs",
  "squashfs",
  "ext4",
  "overlay",
  "vmw_vsock_virtio_transport",
  // The verified root (dm-verity over the root disk), with device-mapper.
  "dm_verity",
] as const;
