import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { removeTreeSync } from "../../util/remove-tree.js";

/** Scratch directories still on disk, removed at exit if nobody disposed of them. */
const live = new Set<string>();
let exitHookInstalled = false;

/**
 * A private (0700) temporary directory for what an image reader unpacks:
 * the tree's file contents point into it until `dispose()`. 0700 matters as
 * root: an extracted image may hold setuid-root files and device nodes,
 * which no other user of the host may reach.
 */
export function makeScratchDir(prefix: string): { path: string; dispose: () => Promise<void> } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  live.add(path);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once("exit", () => {
      for (const dir of live) removeScratch(dir);
    });
  }
  return {
    path,
    dispose: async () => {
      live.delete(path);
      removeScratch(path);
    },
  };
}

/**
 * Removes a scratch directory, without recursion (an extracted image may
 * nest deeper than Node's recursive rmSync can go). An extraction as
 * non-root keeps the image's directory modes, so a 0555 directory would
 * refuse the removal of its entries: each is made writable by its owner
 * (us) first.
 */
function removeScratch(dir: string): void {
  removeTreeSync(dir, { makeWritable: true });
}
