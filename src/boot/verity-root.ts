import { A3sError } from "../errors.js";
import { findVerityTree, readVeritySidecar, VERITY_BLOCK, veritySidecarPath } from "../formats/verity/index.js";
import type { BootImageKind } from "./image-kind.js";

/** What the guest needs to open its root through dm-verity. */
export interface VerityRoot {
  readonly rootHash: string;
  readonly salt: string;
  readonly dataBlocks: number;
  /** The first hash block, right after the verity superblock. */
  readonly hashStartBlock: number;
  /** Where the root hash came from: the user, the build's record, or the annotation of the artifact pulled. */
  readonly source: "--root-hash" | "sidecar" | "registry";
}

/**
 * `run` exits with this status when the guest's root failed verification: a
 * block of the image did not match the hash tree, so the kernel stopped the
 * VM before the agent could read it (or, met later, stopped it then).
 * Outside the agent's 0–125 and the shell's 126/127, and not 124 (timeout(1)).
 */
export const ROOT_VERIFICATION_FAILED = 123;

/**
 * The dm-verity parameters for booting `image`, or undefined when it
 * carries no hash tree. The salt and sizes come from the verity superblock
 * appended to the image; the root hash, which the image cannot carry, from
 * `--root-hash` or else the `IMAGE.verity.json` the build wrote. A root hash
 * that does not match the image's blocks makes the guest's first read of the
 * root fail verification: the boot stops, it never runs on other bytes.
 */
export async function resolveVerityRoot(
  image: string,
  kind: BootImageKind,
  pinned: string | undefined,
  pinnedBy: "--root-hash" | "registry" = "--root-hash",
): Promise<VerityRoot | undefined> {
  const wanted = pinned?.toLowerCase();
  if (wanted !== undefined && !/^[0-9a-f]{64}$/.test(wanted)) {
    throw new A3sError("EUSAGE", `--root-hash must be 64 hex digits (a sha256 root hash), got ${JSON.stringify(pinned)}`);
  }
  if (kind === "cpio" || kind === "dir") {
    if (wanted) {
      throw new A3sError("EUSAGE", `--root-hash needs an erofs, squashfs or ext4 image built with --verity; ${image} is a ${kind === "dir" ? "directory" : "cpio archive"}`, {
        subject: image,
      });
    }
    return undefined;
  }
  // The record beside the image, when there is one, says where the tree is
  // and that there must be one: a change to the image's own size fields
  // (which the tree covers, but only once verity is on) cannot turn it off.
  const sidecar = await readVeritySidecar(image);
  const tree = await findVerityTree(image, kind, sidecar?.hashOffset);
  if (sidecar && (!tree || sidecar.dataBlocks !== tree.dataBlocks || sidecar.salt !== tree.salt)) {
    throw new A3sError("EVERITY", `refusing to boot ${image}: it does not match its verity record ${veritySidecarPath(image)} (no hash tree where the record says, or another build's)`, {
      subject: image,
      hint: "rebuild the image, or give the root hash from the build report with --root-hash and remove the record",
    });
  }
  if (!tree) {
    if (wanted) {
      throw new A3sError("EVERITY", `${image} carries no dm-verity hash tree, so --root-hash cannot be checked`, {
        subject: image,
        hint: "build it with a3s-rootfs build --verity",
      });
    }
    return undefined;
  }
  if (wanted && sidecar && sidecar.rootHash !== wanted) {
    throw new A3sError("EVERITY", `refusing to boot ${image}: its recorded root hash ${sidecar.rootHash} is not the pinned ${wanted}`, {
      subject: image,
    });
  }
  const rootHash = wanted ?? sidecar?.rootHash;
  if (!rootHash) {
    throw new A3sError("EVERITY", `${image} carries a dm-verity hash tree but its root hash is not known`, {
      subject: image,
      hint: `give --root-hash (from the build report), or keep ${veritySidecarPath(image)} beside the image`,
    });
  }
  return {
    rootHash,
    salt: tree.salt,
    dataBlocks: tree.dataBlocks,
    hashStartBlock: tree.hashOffset / VERITY_BLOCK + 1,
    source: wanted ? pinnedBy : "sidecar",
  };
}

/** The guest config's `rootverity` value (docs/guest-protocol.md §3). */
export function rootVerityValue(v: VerityRoot): string {
  return `${v.rootHash}:${v.salt === "" ? "-" : v.salt}:${v.dataBlocks}:${v.hashStartBlock}`;
}

/**
 * Whether the console shows the kernel stopping on a block that failed
 * verification: dm-verity logs the corrupt block, then panics
 * (panic_on_corruption). The line it printed is returned.
 */
export function verityFailure(consoleText: string): string | undefined {
  const line = /^.*device-mapper: verity: .*(?:is corrupted|corrupted).*$/m.exec(consoleText)?.[0];
  if (line) return line.replace(/^\[\s*[\d.]+\]\s*/, "").trim();
  return /dm-verity device corrupted/.test(consoleText) ? "dm-verity device corrupted" : undefined;
}
