import { readFile } from "node:fs/promises";
import { A3sError } from "../../errors.js";
import type { VerityInfo } from "./params.js";

/**
 * The small file beside a verity image that records its root hash (which
 * the image cannot carry: it is the hash of the image) and where the tree
 * is: `IMAGE.verity.json`. It is a convenience for `run IMAGE` on the host
 * that built the image; a root hash that must be trusted comes from the
 * build report, the registry annotation or `--root-hash`.
 */
export function veritySidecarPath(imagePath: string): string {
  return `${imagePath}.verity.json`;
}

type SidecarFields = Pick<VerityInfo, "rootHash" | "salt" | "hashOffset" | "dataBlocks" | "algorithm">;

export function renderVeritySidecar(info: VerityInfo): string {
  const { rootHash, salt, hashOffset, dataBlocks, algorithm } = info;
  return JSON.stringify({ a3sVerity: 1, rootHash, salt, hashOffset, dataBlocks, algorithm }, null, 2) + "\n";
}

/** The sidecar beside `imagePath`, or null when there is none; a malformed one is an error naming it. */
export async function readVeritySidecar(imagePath: string): Promise<SidecarFields | null> {
  const path = veritySidecarPath(imagePath);
  const text = await readFile(path, "utf8").catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return null;
    throw new A3sError("EVERITY", `cannot read ${path}: ${e.message}`, { subject: path });
  });
  if (text === null) return null;
  const bad = (why: string): A3sError => new A3sError("EVERITY", `${path}: ${why}`, { subject: path, hint: "rebuild the image with --verity" });
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text.slice(0, 64 << 10)) as Record<string, unknown>;
  } catch {
    throw bad("not JSON");
  }
  if (v.a3sVerity !== 1) throw bad("not an a3s-rootfs verity record (version 1)");
  if (typeof v.rootHash !== "string" || !/^[0-9a-f]{64}$/.test(v.rootHash)) throw bad("rootHash is not 64 hex digits");
  if (typeof v.salt !== "string" || !/^([0-9a-f]{2})*$/.test(v.salt) || v.salt.length > 512) throw bad("salt is not hex");
  for (const k of ["hashOffset", "dataBlocks"] as const) {
    if (typeof v[k] !== "number" || !Number.isSafeInteger(v[k]) || (v[k] as number) <= 0) throw bad(`${k} is not a positive integer`);
  }
  if (v.algorithm !== "sha256") throw bad("algorithm is not sha256");
  return { rootHash: v.rootHash, salt: v.salt, hashOffset: v.hashOffset as number, dataBlocks: v.dataBlocks as number, algorithm: "sha256" };
}
