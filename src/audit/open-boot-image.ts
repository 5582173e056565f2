import { openArchiveTree } from "../formats/open-archive.js";
import { readImageTree } from "../formats/read-image.js";
import { parsePlatform } from "../oci/platform.js";
import { parseReference } from "../oci/reference.js";
import { pullBootImage } from "../oci/registry/boot-image-pull.js";
import { RegistryClient } from "../oci/registry/client.js";
import { parseCredsFlag } from "../oci/registry/credentials.js";
import type { ImageFormat } from "../formats/read-image.js";
import type { RootfsTree } from "../tree/index.js";

/** A pulled boot image, read (the shape of open-target.ts's InspectTarget). */
export interface OpenedBootImage {
  readonly tree: RootfsTree;
  readonly format: "cpio" | ImageFormat;
  readonly xattrsRead: boolean;
  readonly notes: readonly string[];
  dispose(): Promise<void>;
}

/**
 * `inspect docker://REF` of an a3s boot image (pushed with
 * `-o FORMAT:docker://REF`): pulled into the content store, verified, and
 * read as the image it is, exactly what `run docker://REF` boots.
 * Undefined when REF names something else (a container image), which is
 * read through the docker:// source instead.
 */
export async function openPulledBootImage(
  target: string,
  opts: {
    privileged?: boolean;
    warn?: (m: string) => void;
    progress?: (m: string) => void;
    signal?: AbortSignal;
    /** "user:password", plain HTTP, "os/arch[/variant]", as `build` takes them. */
    registry?: { creds?: string; insecure?: boolean; platform?: string };
  },
): Promise<OpenedBootImage | undefined> {
  const warn = opts.warn ?? ((m: string) => process.stderr.write(`a3s-rootfs: warning: ${m}\n`));
  const progress = opts.progress ?? (() => undefined);
  const { creds, insecure, platform } = opts.registry ?? {};
  const client = new RegistryClient({
    warn,
    progress,
    ...(creds ? { credentials: parseCredsFlag(creds) } : {}),
    ...(insecure ? { insecure: true } : {}),
  });
  const pulled = await pullBootImage(client, parseReference(target.slice("docker://".length)), {
    progress,
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(platform ? { platform: parsePlatform(platform) } : {}),
  });
  if (!pulled) return undefined;
  const note = `${target} is an a3s boot image (${pulled.format}), pulled and verified: ${pulled.digest}`;
  if (pulled.format === "cpio") {
    const archive = await openArchiveTree(pulled.path);
    return { tree: archive.tree, format: "cpio", xattrsRead: true, notes: [note], dispose: () => archive.dispose() };
  }
  const read = await readImageTree(pulled.path, pulled.format, opts.privileged === undefined ? {} : { privileged: opts.privileged });
  return { tree: read.tree, format: pulled.format, xattrsRead: read.xattrsRead, notes: [note, ...read.notes], dispose: () => read.dispose() };
}
