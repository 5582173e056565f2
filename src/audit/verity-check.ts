import { A3sError } from "../errors.js";
import { findVerityTree, readVeritySidecar, verifyVerityTree, veritySidecarPath, type VerityImageKind } from "../formats/verity/index.js";

/** What `inspect` reports about an image's dm-verity hash tree (docs/inspect.md). */
export interface VerityReport {
  /** Whether the image carries a hash tree after its filesystem. */
  readonly present: boolean;
  readonly dataBlocks?: number;
  readonly hashOffset?: number;
  readonly salt?: string;
  /** The root hash the image is checked against, when one is known. */
  readonly rootHash?: string;
  /** Where that root hash came from: `--root-hash`, the IMAGE.verity.json record beside the image, or a pulled artifact's annotation. */
  readonly rootHashSource?: "--root-hash" | "sidecar" | "registry";
  /** With --verify: null when every block and hash matched; else what did not. Absent without --verify. */
  readonly mismatch?: string | null;
}

/**
 * The verity report of an erofs, squashfs or ext4 image: whether it has a
 * hash tree, and with `verify`, whether every data block and stored hash
 * leads to the root hash (one read of the image, as the kernel would check
 * it block by block).
 */
export async function checkVerity(
  image: string,
  kind: VerityImageKind,
  opts: {
    verify?: boolean;
    rootHash?: string;
    /** Where `rootHash` came from (default --root-hash). */
    rootHashSource?: "--root-hash" | "registry";
    /** What messages call the image (default its path): a pulled one is named by its reference, not its place in the store. */
    name?: string;
    signal?: AbortSignal;
  } = {},
): Promise<VerityReport> {
  const name = opts.name ?? image;
  const sidecar = await readVeritySidecar(image).catch(() => null);
  const tree = await findVerityTree(image, kind, sidecar?.hashOffset);
  if (!tree) {
    if (opts.verify || opts.rootHash) {
      throw new A3sError("EVERITY", `${name} carries no dm-verity hash tree to verify`, { subject: name, hint: "build it with --verity" });
    }
    if (sidecar) return { present: false, mismatch: `no hash tree at byte ${sidecar.hashOffset}, where ${veritySidecarPath(image)} says it is` };
    return { present: false };
  }
  const pinned = opts.rootHash?.toLowerCase();
  const rootHash = pinned ?? sidecar?.rootHash;
  const base: VerityReport = {
    present: true,
    dataBlocks: tree.dataBlocks,
    hashOffset: tree.hashOffset,
    salt: tree.salt,
    ...(rootHash ? { rootHash, rootHashSource: pinned ? (opts.rootHashSource ?? "--root-hash") : "sidecar" } : {}),
  };
  if (!opts.verify) return base;
  if (!rootHash) {
    throw new A3sError("EVERITY", `${name} has a hash tree but its root hash is not known`, {
      subject: name,
      hint: `give --root-hash, or keep ${veritySidecarPath(image)} beside the image`,
    });
  }
  const mismatch = await verifyVerityTree(image, { rootHash, salt: tree.salt, hashOffset: tree.hashOffset, dataBlocks: tree.dataBlocks }, opts.signal);
  return { ...base, mismatch };
}
