import { A3sError } from "../../errors.js";

/** The newc magic the writer uses; "070702" (crc) differs only in carrying a checksum, which the kernel does not need. */
export const NEWC_MAGIC = "070701";
/** Bytes of a newc header before the name. */
export const NEWC_HEADER = 110;
/** The name of the entry that ends a cpio archive. */
export const NEWC_TRAILER = "TRAILER!!!";

/**
 * Which cpio variant a header starts with: "newc" for the ASCII formats the
 * kernel reads (070701 newc, 070702 crc), "odc" for the old portable format
 * (070707), which is recognised only to be refused by name.
 */
export function cpioMagic(head: Uint8Array): "newc" | "odc" | undefined {
  const m = Buffer.from(head.buffer, head.byteOffset, Math.min(6, head.byteLength)).toString("latin1");
  if (m === "070701" || m === "070702") return "newc";
  if (m === "070707") return "odc";
  return undefined;
}

/** The error for an odc archive. */
export function odcRefused(path: string): A3sError {
  return new A3sError("EUNSUPPORTED", `${path} is an old "odc" cpio archive; only newc is supported`, {
    subject: path,
    hint: "create it with cpio -H newc",
  });
}

/** What is missing when a file named like a cpio archive is not one (for `unrecognisedFormat`). */
export const CPIO_MAGIC_MISSING = 'the newc cpio magic "070701" is missing at byte 0';
