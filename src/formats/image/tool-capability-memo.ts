import { createHash } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { isAbsolute, join } from "node:path";
import { cacheRoot } from "../../util/cache-dir.js";
import type { ToolCommand } from "../../util/host-tool.js";
import { writeFileAtomic } from "../../util/write-file-atomic.js";

/**
 * A tool's capabilities (image-tools.ts), remembered across processes in
 * the cache, by the identity of the files that make up its command: the
 * program and, for a provisioned one, its loader (inode, size, modification
 * and change times). A build to erofs otherwise starts the host's
 * mkfs.erofs and the provisioned one twice each just to read their help and
 * version: a scratch build to erofs took 318 ms with that and 259 ms
 * without. An upgraded or replaced tool has another identity and is asked
 * again. What is read back is checked by `valid`; anything else is asked
 * again too.
 */
export async function rememberedCapabilities<T>(
  kind: string,
  cmd: ToolCommand,
  probe: () => Promise<T>,
  valid: (x: unknown) => x is T,
): Promise<T> {
  const key = await commandIdentityKey(kind, cmd);
  const path = join(cacheRoot(), "tool-capabilities", `${key}.json`);
  let known: unknown;
  try {
    known = JSON.parse(await readFile(path, "utf8"));
  } catch {
    known = undefined; // none yet, or damaged: asked again
  }
  if (valid(known)) return known;
  const found = await probe();
  // A cache this process cannot write only means asking the tool again next time.
  await writeFileAtomic(path, JSON.stringify(found) + "\n").catch(() => undefined);
  return found;
}

/** The digest of the kind, the command line and the identity of every absolute path in it that is a file. */
async function commandIdentityKey(kind: string, cmd: ToolCommand): Promise<string> {
  const h = createHash("sha256").update(JSON.stringify([kind, cmd.file, ...cmd.prefix]));
  for (const p of [cmd.file, ...cmd.prefix].filter((a) => isAbsolute(a))) {
    const st = await stat(p, { bigint: true }).catch(() => undefined);
    h.update(st?.isFile() ? `\0${p}:${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}` : `\0${p}:-`);
  }
  return h.digest("hex");
}
