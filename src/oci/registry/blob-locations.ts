import { createHash } from "node:crypto";
import { appendFile, mkdir, open } from "node:fs/promises";
import { join } from "node:path";
import { parseDigest } from "../digest.js";

/** A record is read up to this size; a few hundred repositories at most. */
const MAX_RECORD_BYTES = 64 * 1024;
/** Repository names as the reference grammar allows them (oci/reference.ts), nothing else is offered for a mount. */
const REPOSITORY = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;

/**
 * Where this host has seen a blob in a registry: which repositories of which
 * registry held it when we pulled it from there or pushed it there. A push
 * to another repository of the same registry asks the registry to mount the
 * blob from one of them instead of uploading it again (the distribution
 * spec's cross-repository mount).
 *
 * It is a hint, never trusted: a registry that no longer has the blob there
 * (or will not mount it) starts an ordinary upload instead. Kept beside the
 * content store as ROOT/sources/REGISTRY-HASH/ALGO-HEX, one repository per
 * line, appended (O_APPEND writes of one short line do not interleave).
 */
export class BlobLocations {
  constructor(readonly root: string) {}

  /** Remembers that `repository` of `registry` holds `digest`. */
  async record(registry: string, repository: string, digest: string): Promise<void> {
    if (!REPOSITORY.test(repository)) return;
    const known = await this.repositories(registry, digest);
    if (known.includes(repository)) return;
    const dir = this.dir(registry);
    await mkdir(dir, { recursive: true });
    await appendFile(this.file(registry, digest), `${repository}\n`);
  }

  /** Repositories of `registry` known to hold `digest`, the most recently recorded last. */
  async repositories(registry: string, digest: string): Promise<string[]> {
    const handle = await open(this.file(registry, digest), "r").catch(() => undefined);
    if (!handle) return [];
    try {
      const buf = Buffer.alloc(MAX_RECORD_BYTES);
      const { bytesRead } = await handle.read(buf, 0, MAX_RECORD_BYTES, 0);
      const names = buf.subarray(0, bytesRead).toString("utf8").split("\n");
      // A record cut at the read limit may end in half a name: the last line is dropped then.
      if (bytesRead === MAX_RECORD_BYTES) names.pop();
      return [...new Set(names.filter((n) => REPOSITORY.test(n)))];
    } finally {
      await handle.close();
    }
  }

  private dir(registry: string): string {
    return join(this.root, createHash("sha256").update(registry.toLowerCase()).digest("hex").slice(0, 32));
  }

  private file(registry: string, digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return join(this.dir(registry), `${algorithm}-${hex}`);
  }
}
