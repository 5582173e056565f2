import { open } from "node:fs/promises";
import { join } from "node:path";
import { requireTool, runTool } from "../util/host-tool.js";

/** The smallest scratch disk: room for ext4's own metadata and a journal, with space left to work in. */
export const MIN_SCRATCH_DISK_MIB = 64;

/**
 * A sparse ext4 image of `sizeMiB` MiB in the run directory, for the
 * workspace overlay's upper layer (run --scratch-disk): the file takes only
 * the blocks the guest writes (QEMU's discard=unmap gives freed ones back),
 * and it goes with the run directory. Made by mke2fs with lazy inode-table
 * initialisation and no journal, so making even a large one writes little.
 */
export async function createScratchDisk(work: string, sizeMiB: number, signal?: AbortSignal): Promise<string> {
  const mke2fs = requireTool("mke2fs", "e2fsprogs");
  const path = join(work, "scratch.ext4");
  const h = await open(path, "wx", 0o600);
  try {
    await h.truncate(sizeMiB * 2 ** 20);
  } finally {
    await h.close();
  }
  // -m 0: no blocks kept for root; the disk is the agent's scratch space, not a system's root.
  // No journal: the disk dies with the run, so there is no crash to recover from
  // (the second design; bench/results/workspace-io-modes*.md measure both).
  await runTool(mke2fs, ["-q", "-F", "-t", "ext4", "-O", "^has_journal", "-m", "0", "-E", "lazy_itable_init=1,nodiscard", "-L", "a3s-scratch", path], { signal });
  return path;
}
