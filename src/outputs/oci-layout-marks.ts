import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { LAYOUT_VERSION_LABEL } from "./image-labels.js";

// Kept apart from the layout writer (oci-layout-output.ts): every build checks
// its output paths (output-target.ts), and only one that writes a layout
// should load the image and tar code (CLI start time).

/** Largest index.json or manifest an `oci` output writes, with room to spare: anything larger is not ours. */
const MAX_MARK_DOCUMENT_BYTES = 1 << 20;

/**
 * Whether `dir` holds exactly one OCI image layout as an `oci` output
 * writes it: the oci-layout marker, an index.json naming one manifest whose
 * config carries a3s-rootfs's layout version label, and no blob but that
 * manifest's. Such a directory may be replaced by the next build
 * (output-target.ts); one holding any other image or file is not ours to
 * delete. Anything unreadable or malformed is not ours either.
 */
export async function layoutMarks(dir: string): Promise<boolean> {
  try {
    const names = (await readdir(dir)).sort();
    if (names.join("/") !== "blobs/index.json/oci-layout") return false;
    if ((await readdir(join(dir, "blobs"))).join("/") !== "sha256") return false;
    const blob = (digest: unknown): string => {
      if (typeof digest !== "string" || !/^sha256:[0-9a-f]{64}$/.test(digest)) throw new Error("not a sha256 digest");
      return join(dir, "blobs", "sha256", digest.slice("sha256:".length));
    };
    const json = async (path: string): Promise<Record<string, unknown>> => {
      if ((await stat(path)).size > MAX_MARK_DOCUMENT_BYTES) throw new Error("too large");
      return JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
    };
    const index = await json(join(dir, "index.json"));
    const entries = index.manifests;
    if (!Array.isArray(entries) || entries.length !== 1) return false;
    const manifestDigest = (entries[0] as { digest?: unknown }).digest;
    const manifest = (await json(blob(manifestDigest))) as { config?: { digest?: unknown }; layers?: { digest?: unknown }[] };
    const config = (await json(blob(manifest.config?.digest))) as { config?: { Labels?: Record<string, unknown> } };
    if (typeof config.config?.Labels?.[LAYOUT_VERSION_LABEL] !== "string") return false;
    const ours = new Set([manifestDigest, manifest.config?.digest, ...(manifest.layers ?? []).map((l) => l.digest)].map((d) => blob(d)));
    const present = (await readdir(join(dir, "blobs", "sha256"))).map((n) => join(dir, "blobs", "sha256", n));
    return present.every((p) => ours.has(p));
  } catch {
    return false;
  }
}
