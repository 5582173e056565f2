/** Parsing the small JSON documents of an image (manifests, indexes, configs), which are untrusted. */

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Parses bytes as one JSON object. `bad` turns a reason into the caller's
 * error, so the message names the document (a digest, a file) it came from.
 * The caller bounds the size before calling.
 */
export function parseJsonObject(bytes: Uint8Array, bad: (why: string) => Error): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8"));
  } catch (e) {
    throw bad(`not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(doc)) throw bad("not a JSON object");
  return doc;
}
