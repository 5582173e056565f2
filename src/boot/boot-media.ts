import { createReadStream, createWriteStream } from "node:fs";
import { appendFile, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { finished, pipeline } from "node:stream/promises";
import { A3sError } from "../errors.js";
import { GUEST_CONFIG_DROPIN_DIR, GUEST_CONFIG_PATH, renderGuestConfig } from "../layout/guest-config.js";
import { guestProgramPath } from "../programs/index.js";
import { readDirectoryTree } from "../formats/dir/index.js";
import { cpioStream } from "../formats/newc/index.js";
import { RootfsTree, bytesContent } from "../tree/index.js";
import type { BootImageKind } from "./image-kind.js";
import { modulesFor, type KernelBundle, type KernelModule } from "./kernel-bundle.js";
import { packsUnsignedModules, withoutModuleSignature } from "./module-signature.js";

export type ShareTransport = "virtiofs" | "9p";

/** Where the guest finds the modules the host adds for this boot. */
export const GUEST_MODULE_DIR = "/lib/modules/a3s";

/** Modules for each guest feature (dependencies come from the bundle). */
const FEATURE_MODULES = {
  base: ["virtio_mmio", "virtio_console"],
  // Only for a workspace in overlay mode (guest/workspace.c mounts it).
  overlay: ["overlay"],
  "9p": ["9pnet_virtio", "9p"],
  virtiofs: ["virtiofs"],
  disk: ["virtio_blk"],
  erofs: ["crc32c_generic", "erofs"],
  squashfs: ["squashfs"],
  ext4: ["crc32c_generic", "ext4"],
  verity: ["dm_verity"],
} as const;

export interface BootMedia {
  /** The initramfs to pass to the kernel. */
  readonly initrd: string;
  /** A root image for a virtio block device (disk mode). */
  readonly disk?: string;
  readonly modules: readonly KernelModule[];
}

/**
 * Prepares what the kernel boots for one run, in `workDir`:
 * - a cpio image boots as is, with a second cpio appended (the kernel
 *   unpacks concatenated archives in turn) holding this kernel's modules
 *   and a config drop-in listing them, so one image boots on any kernel;
 * - a rootfs directory is packed into a cpio first, the same way;
 * - an ext4, erofs or squashfs image becomes a read-only virtio disk, and
 *   the initramfs is just the init, the modules and a config naming the root.
 */
export async function prepareBootMedia(opts: {
  kind: BootImageKind;
  image: string;
  kernel: KernelBundle;
  transport: ShareTransport;
  /** A disk root opened through dm-verity: its modules go in too. */
  verity?: boolean;
  /** A scratch disk (ext4, virtio-blk) for the workspace overlay: its modules go in too. */
  scratchDisk?: boolean;
  /**
   * What this boot's jobs can ask for, when the caller knows: shares over
   * `transport` (false: the VM has none) and a workspace in overlay mode.
   * Left out, both are assumed (a snapshot's machine may run any job later).
   * Each module not loaded is boot time saved with a kernel that needs
   * modules: measured under TCG with Debian's kernel, the 9p stack (9pnet,
   * 9pnet_virtio, netfs, fscache, 9p) and overlay took about 120 ms of
   * init's ~240 ms of finit_module calls, ELF relocation, signature and
   * BTF checks and module init included.
   */
  jobs?: { readonly shares: boolean; readonly overlay: boolean };
  workDir: string;
}): Promise<BootMedia> {
  const initrd = join(opts.workDir, "initrd.img");
  const jobs = opts.jobs ?? { shares: true, overlay: true };
  const shareModules = [
    ...(!jobs.shares ? [] : opts.transport === "virtiofs" ? FEATURE_MODULES.virtiofs : FEATURE_MODULES["9p"]),
    ...(jobs.overlay ? FEATURE_MODULES.overlay : []),
    ...(opts.scratchDisk ? [...FEATURE_MODULES.disk, ...FEATURE_MODULES.ext4] : []),
  ];
  if (opts.kind === "cpio" || opts.kind === "dir") {
    const modules = modulesFor(opts.kernel, [...FEATURE_MODULES.base, ...shareModules]);
    const out = createWriteStream(initrd);
    let written = 0;
    if (opts.kind === "cpio") {
      await pipeline(createReadStream(opts.image), out, { end: false });
      written = (await stat(opts.image)).size;
    } else {
      const tree = await readDirectoryTree(opts.image);
      requireInit(tree, opts.image);
      const packed = cpioStream(tree);
      packed.on("data", (b: Buffer) => (written += b.length));
      await pipeline(packed, out, { end: false });
    }
    if (modules.length === 0) {
      // A kernel with its drivers built in: the image boots as it is.
      out.end();
      await finished(out);
    } else {
      // The next archive must start on a 4-byte boundary; the kernel skips NUL padding between archives.
      const pad = (4 - (written % 4)) % 4;
      if (pad) out.write(Buffer.alloc(pad));
      await pipeline(cpioStream(await moduleTree(modules, {}, true, packsUnsignedModules(opts.kernel.origin)), { initramfsDevices: false }), out);
    }
    await padClearOfFirmwareTables(initrd);
    return { initrd, modules };
  }

  const fsModules = FEATURE_MODULES[opts.kind];
  const verityModules = opts.verity ? FEATURE_MODULES.verity : [];
  const modules = modulesFor(opts.kernel, [...FEATURE_MODULES.base, ...FEATURE_MODULES.disk, ...verityModules, ...fsModules, ...shareModules]);
  const tree = await moduleTree(modules, { root: "/dev/vda", rootfstype: opts.kind }, false, packsUnsignedModules(opts.kernel.origin));
  for (const dir of ["/dev", "/proc", "/sys", "/sysroot"]) tree.addDirectory(dir);
  const init = guestProgramPath("init");
  tree.addFile("/init", { type: "hostFile", path: init, size: (await stat(init)).size }, { mode: 0o755 });
  await pipeline(cpioStream(tree), createWriteStream(initrd));
  await padClearOfFirmwareTables(initrd);
  return { initrd, disk: opts.image, modules };
}

/** Where the initrd should end, counted from a page boundary: see padClearOfFirmwareTables. */
const INITRD_END_IN_PAGE = 4;
const PAGE = 4096;

/**
 * Pads the initrd with NUL bytes (the kernel skips them after an archive) so
 * that its size is 4 bytes past a multiple of the page size.
 *
 * Why: QEMU's microvm, booting an ELF kernel through its PVH entry (the
 * default, see debian-kernel.ts), places the initrd so that it ends at the
 * very top of low RAM, in the last page, where the firmware has already put
 * the ACPI tables, and copies it over them: the initrd ends (size mod 4096)
 * bytes into that page. Measured with QEMU 10.0: an initrd ending 3584 bytes
 * in overwrote the DSDT, the virtio-mmio devices were never found and the
 * boot hung. Ending 4 bytes into the page leaves the tables (at its end)
 * intact. A bzImage boot places the initrd lower, where the padding is
 * harmless.
 */
export async function padClearOfFirmwareTables(initrd: string): Promise<void> {
  const size = (await stat(initrd)).size;
  const pad = (PAGE + INITRD_END_IN_PAGE - (size % PAGE)) % PAGE;
  if (pad) await appendFile(initrd, Buffer.alloc(pad));
}

/**
 * A tree with the modules and the config that loads them: the whole config
 * of a disk-mode initramfs (with the root device), or a drop-in on top of an
 * image's own config.
 */
async function moduleTree(
  modules: readonly KernelModule[],
  extra: { root?: string; rootfstype?: string },
  dropIn: boolean,
  unsigned: boolean,
): Promise<RootfsTree> {
  const tree = new RootfsTree();
  for (const m of modules) {
    const path = `${GUEST_MODULE_DIR}/${m.name}.ko`;
    if (unsigned) {
      tree.addFile(path, bytesContent(withoutModuleSignature(await readFile(m.path), m.path)), { mode: 0o644 });
    } else {
      tree.addFile(path, { type: "hostFile", path: m.path, size: (await stat(m.path)).size }, { mode: 0o644 });
    }
  }
  const config = renderGuestConfig({
    modules: modules.map((m) => `${GUEST_MODULE_DIR}/${m.name}.ko`),
    ...(extra.root ? { root: extra.root } : {}),
    ...(extra.rootfstype ? { rootfstype: extra.rootfstype } : {}),
  });
  tree.addFile(dropIn ? `${GUEST_CONFIG_DROPIN_DIR}/50-kernel-modules.conf` : GUEST_CONFIG_PATH, bytesContent(config));
  return tree;
}

function requireInit(tree: RootfsTree, image: string): void {
  if (!tree.lookup("/sbin/init") && !tree.lookup("/init")) {
    throw new A3sError("EIMAGE", `${image} has no /sbin/init: it was built with --no-init or not by a3s-rootfs`, {
      subject: image,
      hint: "rebuild it with a3s-rootfs build (the A3S init is included by default)",
    });
  }
}
