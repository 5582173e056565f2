import { createHash } from "node:crypto";
import { open, readFile } from "node:fs/promises";
import { join } from "node:path";
import { descriptorSha256, type FileDigest } from "../util/file-sha256.js";
import { identityOf } from "../util/file-identity.js";
import { writeFileAtomic } from "../util/write-file-atomic.js";

/**
 * The sha256 of a file, remembered by the file's identity (inode, size,
 * mtime and ctime in ns: see util/file-identity.ts) in `memoDir`, so that a
 * warm start does not hash a 20 MB kernel and the image again on every
 * run. A file written since has another ctime, so it is hashed again; the
 * identity is taken from the descriptor that is hashed.
 */
export async function memoizedFileSha256(path: string, memoDir?: string): Promise<FileDigest> {
  const fh = await open(path, "r");
  try {
    const id = identityOf(await fh.stat({ bigint: true }));
    const key = createHash("sha256")
      .update(`${id.dev}:${id.ino}:${id.size}:${id.mtimeNs}:${id.ctimeNs}`)
      .digest("hex");
    const memo = memoDir ? join(memoDir, key) : undefined;
    const known = memo ? await readFile(memo, "utf8").catch(() => undefined) : undefined;
    if (known && /^[0-9a-f]{64}$/.test(known)) return { sha256: known, bytes: id.size };
    const { sha256 } = await descriptorSha256(fh.fd);
    if (memo) await writeFileAtomic(memo, sha256);
    return { sha256, bytes: id.size };
  } finally {
    await fh.close();
  }
}
