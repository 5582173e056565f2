import { stat } from "node:fs/promises";
import { A3sError } from "../errors.js";
import { readArchiveTree } from "../sources/archive-reader.js";
import { readDirectoryTree } from "../sources/dir-reader.js";
import type { RootfsTree } from "../tree/index.js";

/** Reads what `inspect` was pointed at: a rootfs directory, or a tar or cpio archive (compressed or not). */
export async function openInspectTarget(target: string): Promise<RootfsTree> {
  const st = await stat(target).catch(() => undefined);
  if (!st) throw new A3sError("ENOENT", `${target} does not exist`, { subject: target });
  if (st.isDirectory()) return readDirectoryTree(target);
  if (st.isFile()) return readArchiveTree(target);
  throw new A3sError("EUSAGE", `${target} is neither a directory nor a file`, { subject: target });
}
