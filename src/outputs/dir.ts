import { writeFile, rm } from "node:fs/promises";
import type { RootfsTree } from "../tree/index.js";
import { writeAtomically } from "./atomic.js";
import { materialiseTree } from "./materialise.js";
import { buildSidecar, sidecarPathFor } from "./metadata-sidecar.js";
import type { OutputContext, OutputPaths, OutputWriter } from "./output.js";

export function isPrivileged(): boolean {
  return process.getuid?.() === 0;
}

/**
 * `dir`: the tree as a real directory. As root every entry is exact; as
 * non-root what cannot be applied is recorded in the metadata sidecar.
 */
export const dirOutput: OutputWriter & { sidecarFor(path: string): string } = {
  format: "dir",
  sidecarFor: sidecarPathFor,
  async write(tree: RootfsTree, paths: OutputPaths, ctx: OutputContext): Promise<void> {
    const privileged = isPrivileged();
    const { approximated } = await materialiseTree(tree, paths.tmp, { privileged });
    const sidecar = sidecarPathFor(paths.final);
    if (privileged) {
      await rm(sidecar, { force: true });
      return;
    }
    await writeAtomically(sidecar, (tmp) => writeFile(tmp, JSON.stringify(buildSidecar(tree, approximated)) + "\n"));
    if (approximated.length > 0) {
      ctx.warn(
        `not running as root: ${approximated.length} entries (ownership, device nodes or security xattrs) ` +
          `could not be applied on disk; their exact metadata is in ${sidecar}`,
      );
    }
  },
};
