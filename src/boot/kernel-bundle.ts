/** A kernel ready to boot: its image and the modules the guest init loads, in load order. */
export interface KernelBundle {
  /** Kernel release, e.g. "6.1.0-57-amd64" (or the file name for a user kernel without a known release). */
  readonly release: string;
  /** Where it came from, e.g. "debian:linux-image-6.1.0-57-amd64=6.1.192-3" or "file:/path/vmlinux". */
  readonly origin: string;
  readonly kernelPath: string;
  /** Uncompressed .ko files, each after the modules it depends on. Empty for kernels with built-in drivers. */
  readonly modules: readonly { readonly name: string; readonly path: string }[];
}

/**
 * Modules the A3S guest may need: the virtio transports and devices (block,
 * console), virtio-fs with FUSE, 9p with its virtio transport and caching
 * helpers, the read-only root filesystems (erofs, squashfs, ext4 and the
 * checksum driver ext4 asks for), overlayfs and vsock. Dependencies are added
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
  "erofs",
  "squashfs",
  "crc32c_generic",
  "ext4",
  "overlay",
  "vmw_vsock_virtio_transport",
] as const;
