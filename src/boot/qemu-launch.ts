import { guestProgramPath } from "../programs/guest-programs.js";
import type { Accelerator } from "./accelerator.js";
import { dieWithParent } from "./die-with-parent.js";

/** What decides how QEMU is started. */
export interface QemuLaunchOptions {
  readonly accel: Accelerator;
  /**
   * The guest's RAM is a file the user put on a huge-page tmpfs (run
   * --memory-dir) to have 2 MiB pages: PR_SET_THP_DISABLE would take them
   * away (it covers shared memory mappings too), so huge pages stay on.
   */
  readonly memoryDir?: boolean;
  /**
   * A restore of a snapshot: its RAM is the snapshot's memory file, and it
   * runs the little code between the ready point and the agent. Measured
   * (run --warm, scratch cpio, 14 alternated pairs): VMM start → agent
   * start paired median +10 ms without huge pages, faster in 5 of 14, so
   * a restore keeps them.
   */
  readonly restore?: boolean;
}

/**
 * The argv that starts QEMU: killed with this process (die-with-parent.ts),
 * and under TCG without transparent huge pages (guest/thp-off.c sets
 * PR_SET_THP_DISABLE, then execs QEMU) when it boots, unless the user
 * asked for them.
 *
 * Why not under TCG: QEMU asks for huge pages on the guest's RAM and on its
 * translation buffer (madvise MADV_HUGEPAGE), which a host whose THP setting
 * is `madvise` (Debian's default) or `always` honours; each first touch of
 * a 2 MiB region then makes the host allocate and clear a whole huge page.
 * After a scratch boot, QEMU held 45 MB of the guest's RAM, all in huge
 * pages, and 24 MB of translation buffer in huge pages, against 36 MB of
 * RAM in 4 KiB pages without them. On this project's machines (VMs whose
 * freed memory goes back to their host) that cost more than the faults it
 * saves; why, was not traced into their host. Measured on a 2-core one
 * (TCG, the microVM kernel, a scratch cpio image with the probe agent,
 * `run --json`, alternated pairs 3 s apart, the host's setting switched
 * between `madvise` and `never`): VMM start → agent start faster without
 * huge pages in 12 of 13 pairs, paired median −85 ms (450–659 ms against
 * 542–805 ms); in a guest running the workspace bench's fsbench, 64 MiB
 * written to its /tmp took 104–153 ms against 224–308 ms (5 of 5 pairs),
 * and 2,000 small files created, stat'ed and read showed no difference
 * either way. In the boot
 * bench's own path, paired medians −106 ms (microVM kernel, 10 pairs,
 * faster in 8) and −234 ms (Debian's kernel, 8 pairs, faster in 7). Under
 * KVM the guest's own page tables walk through the host's, and huge pages
 * there are what make its memory fast, so KVM keeps them.
 */
export function qemuLaunch(qemu: string, args: readonly string[], o: QemuLaunchOptions): { file: string; args: string[] } {
  if (o.accel !== "tcg" || o.memoryDir || o.restore) return dieWithParent(qemu, args);
  return dieWithParent(guestProgramPath("thp-off"), [qemu, ...args]);
}
