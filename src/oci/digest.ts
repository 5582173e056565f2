import { createHash } from "node:crypto";
import { A3sError } from "../errors.js";

/** Digest algorithms we can verify, with the exact length of their hex encoding. */
export const DIGEST_ALGORITHMS: Readonly<Record<string, number>> = { sha256: 64, sha512: 128 };

/**
 * Splits "sha256:HEX" into its parts, refusing anything else. The digest of
 * untrusted input (a manifest, a layout's index) becomes a file name here, so
 * only lowercase hex of the algorithm's exact length passes: "sha256:../../x"
 * must never turn into a path outside the store (path traversal).
 */
export function parseDigest(digest: string): { algorithm: "sha256" | "sha512"; hex: string } {
  const m = /^(sha256|sha512):([a-f0-9]+)$/.exec(digest);
  if (!m || m[2]!.length !== DIGEST_ALGORITHMS[m[1]!]) {
    throw new A3sError("EDIGEST", `invalid digest ${JSON.stringify(digest)}: expected sha256:<64 hex> or sha512:<128 hex>`, {
      subject: digest,
    });
  }
  return { algorithm: m[1] as "sha256" | "sha512", hex: m[2]! };
}

/** The digest of some bytes, in the same algorithm as `like` (sha256 by default). */
export function digestOf(data: Uint8Array, like = "sha256:"): string {
  const algorithm = like.startsWith("sha512:") ? "sha512" : "sha256";
  return `${algorithm}:${createHash(algorithm).update(data).digest("hex")}`;
}
