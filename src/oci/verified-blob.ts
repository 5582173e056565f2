import { createHash } from "node:crypto";
import { A3sError } from "../errors.js";
import { parseDigest } from "./digest.js";

/** What a descriptor promises about a blob, and where the blob is read from (for messages). */
export interface ExpectedBlob {
  readonly digest: string;
  readonly size: number;
  /** A file, an archive member or a registry address: what the user can go and look at. */
  readonly location: string;
}

/**
 * A blob's bytes, passed through while their digest and count are checked.
 * A byte past the declared size fails at once (a server that streams forever
 * cannot fill the disk); a short blob or a wrong digest fails at its end,
 * which reaches whoever consumes the bytes as an error, so nothing built
 * from them is published.
 */
export async function* verifiedBlob(stream: AsyncIterable<Uint8Array | string> | NodeJS.ReadableStream, blob: ExpectedBlob, subject: string): AsyncGenerator<Uint8Array> {
  const { algorithm } = parseDigest(blob.digest);
  const hash = createHash(algorithm);
  let seen = 0;
  for await (const chunk of stream as AsyncIterable<Uint8Array | string>) {
    const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    seen += bytes.byteLength;
    if (seen > blob.size) {
      throw new A3sError("ESIZE", `${subject}: blob ${blob.digest} in ${blob.location} is larger than the ${blob.size} bytes its descriptor declares`, {
        subject: blob.digest,
        hint: "the blob is not the one the manifest names",
      });
    }
    hash.update(bytes);
    yield bytes;
  }
  const wrong = blobMismatch(blob, subject, seen, hash.digest("hex"));
  if (wrong) throw wrong;
}

/** The error for a blob of `bytes` bytes hashing to `hex` that is not what `blob` promises; undefined when it is. */
export function blobMismatch(blob: ExpectedBlob, subject: string, bytes: number, hex: string): A3sError | undefined {
  if (bytes !== blob.size) {
    return new A3sError("ESIZE", `${subject}: blob ${blob.digest} in ${blob.location} has ${bytes} bytes but its descriptor declares ${blob.size}`, {
      subject: blob.digest,
      hint: "the blob was cut short or is not the one the manifest names",
    });
  }
  const actual = `${parseDigest(blob.digest).algorithm}:${hex}`;
  if (actual !== blob.digest) {
    return new A3sError("EDIGEST", `${subject}: blob digest mismatch: the manifest says ${blob.digest}, the blob in ${blob.location} is ${actual}`, {
      subject: blob.digest,
      hint: "the blob was corrupted or tampered with; nothing was stored",
    });
  }
  return undefined;
}

/** Reads a whole blob only to check it (see `verifiedBlob`). */
export async function checkBlob(stream: AsyncIterable<Uint8Array | string> | NodeJS.ReadableStream, blob: ExpectedBlob, subject: string): Promise<void> {
  for await (const chunk of verifiedBlob(stream, blob, subject)) void chunk;
}
