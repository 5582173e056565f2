import { stat, statfs } from "node:fs/promises";
import { A3sError } from "../errors.js";

/** statfs(2) f_type values (linux/magic.h) of the two filesystems guest RAM may live on. */
const TMPFS_MAGIC = 0x01021994;
const HUGETLBFS_MAGIC = 0x958458f6;

/** A directory for guest RAM (run --memory-dir), checked. */
export interface GuestMemoryDir {
  readonly path: string;
  /** A hugetlbfs: QEMU takes its page size as the alignment; on a tmpfs the mapping is aligned to 2 MiB. */
  readonly hugetlbfs: boolean;
}

/**
 * Checks a directory to hold guest RAM: QEMU creates its RAM file there and
 * unlinks it at once (memory-backend-file with a directory as mem-path), so
 * nothing is left after a run.
 *
 * Why: with a virtio-fs share QEMU must back guest RAM with shared memory
 * (virtiofsd reads and writes the guest's buffers there), and the memfd it
 * otherwise uses gets 4 KiB host pages on a default Debian host (no huge
 * pages for shared memory, and QEMU maps a memfd only 4 KiB-aligned); a
 * tmpfs mounted with huge=always, or a hugetlbfs, gives 2 MiB pages, as
 * anonymous memory gets without shares. Measured under TCG with a workspace
 * over virtio-fs, a tmpfs mounted huge=always against the memfd, 4 pairs of
 * boots alternated: 10,000 files of 4 KiB created in the guest's /tmp in
 * 402-459 ms against 617-1,206 ms (faster in every pair), QEMU's user time
 * 0.95-1.29 s against 1.41-2.11 s and 6,900 minor page faults against
 * 32,100; VMM start to agent start 889-1,261 ms against 941-1,274 ms
 * (faster in 3 of 4 pairs) (docs/boot.md).
 *
 * Only memory filesystems are accepted (a file on a disk filesystem would
 * have the guest's RAM written back to the disk), with room for the RAM.
 */
export async function checkGuestMemoryDir(path: string, memoryMiB: number): Promise<GuestMemoryDir> {
  const isDir = await stat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!isDir) throw new A3sError("EUSAGE", `--memory-dir ${path}: not a directory`, { subject: path, hint: MOUNT_HINT });
  const fs = await statfs(path);
  if (fs.type !== TMPFS_MAGIC && fs.type !== HUGETLBFS_MAGIC) {
    throw new A3sError("EUSAGE", `--memory-dir ${path}: not on a tmpfs or a hugetlbfs (filesystem type 0x${fs.type.toString(16)}): guest RAM there would be written to disk`, {
      subject: path,
      hint: MOUNT_HINT,
    });
  }
  // A full filesystem under guest RAM is a SIGBUS in QEMU when the guest
  // touches the page that does not fit: refused now rather than mid-run
  // (other VMs may still take the room later).
  const freeMiB = Math.floor((fs.bavail * fs.bsize) / 2 ** 20);
  if (freeMiB < memoryMiB) {
    throw new A3sError("EUSAGE", `--memory-dir ${path}: ${freeMiB} MiB free, and the guest's RAM takes ${memoryMiB} MiB`, {
      subject: path,
      hint: "give the guest less --memory, or make room in that filesystem (its size= mount option)",
    });
  }
  return { path, hugetlbfs: fs.type === HUGETLBFS_MAGIC };
}

const MOUNT_HINT = "mount one for guest RAM, e.g. mount -t tmpfs -o huge=always,size=8g a3s-guest-ram DIR (see docs/boot.md)";
