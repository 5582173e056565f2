import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, posix, resolve } from "node:path";
import { Readable } from "node:stream";
import { A3sError } from "../../errors.js";
import { ArchiveFile } from "../../formats/archive/index.js";
import { decompressToFile, supportedCompression } from "../../formats/compression/index.js";
import { detectFormat, readHead } from "../../formats/detect.js";
import { readTarMembers, type TarMemberKind } from "../../formats/tar/index.js";
import { parseDigest } from "../digest.js";
import { MAX_CONFIG_BYTES, parseImageConfig } from "../image-config.js";
import type { ImageLayer } from "../image.js";
import { MAX_MANIFEST_BYTES } from "../manifest.js";
import { DOCKER_LAYER_TAR } from "../media-types.js";
import { chooseLayoutImage, configPlatform, type LayoutChoice, type LayoutFiles, type LayoutOptions } from "../layout/oci-layout.js";
import { formatPlatform, platformMatches } from "../platform.js";
import { formatReference, parseReference } from "../reference.js";
import { checkBlob } from "../verified-blob.js";

/** Members a `docker save` archive may have: a few per layer; far more means it is not one. */
const MAX_ARCHIVE_MEMBERS = 100_000;
/** Symlinks followed from one member name (legacy archives link shared layers to one copy). */
const MAX_MEMBER_LINKS = 16;
/** Largest archive a compressed `docker save` may expand to before it is refused. */
const DEFAULT_MAX_ARCHIVE_BYTES = 64 * 1024 ** 3;

interface Member {
  readonly kind: TarMemberKind;
  readonly offset: number;
  readonly size: number;
  readonly linkName: string;
}

export interface DockerArchiveOptions extends LayoutOptions {
  /** Most bytes a compressed archive may expand to (default 64 GiB). */
  readonly maxArchiveBytes?: number;
  /** Where a compressed archive's decompressed copy goes: the build's scratch directory (default: os.tmpdir()). */
  readonly scratchDir?: string | undefined;
}

export interface OpenedDockerArchive {
  readonly choice: LayoutChoice;
  /** "docker": manifest.json (every `docker save`); "oci": an OCI layout in a tar with no manifest.json. */
  readonly format: "docker" | "oci";
  /** RepoTags of the chosen image. */
  readonly tags: readonly string[];
  /**
   * Removes the decompressed copy of a compressed archive. The image's layers
   * read the archive, so call this only once they are applied.
   */
  dispose(): Promise<void>;
}

/**
 * Opens a `docker save` tarball (plain, or gzip/zstd-compressed as
 * `docker save | gzip` makes) and chooses an image in it.
 *
 * Both layouts Docker writes are read through manifest.json: the legacy one
 * (ID/layer.tar, ID.json) and Docker 25's OCI layout in the tar
 * (blobs/sha256/…, index.json), whose manifest.json points into blobs/. A tar
 * with an OCI layout and no manifest.json is read as an OCI layout.
 *
 * REF picks an image when the archive holds several: a RepoTag
 * ("debian:12", matched also in its normalised form) or "@N" (the Nth entry
 * of manifest.json, from 0). Members are located, never extracted: each
 * layer's open() streams its range of the archive. Every name is looked up
 * in the archive's own member list, so no name in manifest.json can point
 * outside it.
 */
export async function openDockerArchive(path: string, ref: string | undefined, opts: DockerArchiveOptions): Promise<OpenedDockerArchive> {
  const archivePath = resolve(path);
  const { plainPath, dispose } = await plainArchive(archivePath, opts.maxArchiveBytes ?? DEFAULT_MAX_ARCHIVE_BYTES, opts.scratchDir ?? tmpdir());
  try {
    const members = await indexMembers(plainPath, archivePath);
    const files = archiveFiles(archivePath, plainPath, members);
    const label = `docker-archive:${archivePath}${ref === undefined ? "" : `:${ref}`}`;
    if (!members.has("manifest.json")) {
      if (members.has("index.json") && members.has("oci-layout")) {
        const choice = await chooseLayoutImage(files, ref, opts);
        return { choice: { ...choice, image: { ...choice.image, reference: label } }, format: "oci", tags: [], dispose };
      }
      throw new A3sError("EIMAGE", `${archivePath} is not a docker save archive: it has no manifest.json`, {
        subject: archivePath,
        hint: "make one with `docker save IMAGE -o FILE`",
      });
    }
    const entries = parseDockerManifest(await files.readMember("manifest.json", MAX_MANIFEST_BYTES), archivePath);
    const entry = pickEntry(entries, ref, label);
    const configBytes = await files.readMember(entry.Config, MAX_CONFIG_BYTES);
    const configDigest = `sha256:${createHash("sha256").update(configBytes).digest("hex")}`;
    const implied = digestInName(entry.Config);
    if (implied !== undefined && implied !== configDigest) {
      throw new A3sError("EDIGEST", `${label}: config ${entry.Config} does not match its name (it is ${configDigest})`, {
        subject: entry.Config,
        hint: "the archive is damaged or was altered",
      });
    }
    const config = parseImageConfig(configBytes, `${archivePath}:${entry.Config}`);
    const platform = configPlatform(config);
    const warnings: string[] = [];
    if (!platformMatches(opts.platform, platform)) {
      const message = `${label} is an image for ${formatPlatform(platform)}, not ${formatPlatform(opts.platform)}`;
      if (opts.platformChosen) throw new A3sError("EPLATFORM", message, { subject: label });
      warnings.push(message);
    }
    const layers: ImageLayer[] = [];
    for (const [i, name] of entry.Layers.entries()) {
      const member = files.member(name);
      const diffId = config.rootfs.diff_ids[i] ?? "";
      const digest = digestInName(name) ?? (await legacyLayerDigest(plainPath, member, diffId));
      const location = `${archivePath}: ${name}`;
      layers.push({
        digest,
        size: member.size,
        mediaType: DOCKER_LAYER_TAR,
        diffId,
        location,
        open: async () => rangeStream(plainPath, member),
        verify: async () => checkBlob(rangeStream(plainPath, member), { digest, size: member.size, location }, label),
      });
    }
    const image = { reference: label, manifestDigest: configDigest, config, layers, platform };
    return { choice: { image, warnings }, format: "docker", tags: entry.RepoTags, dispose };
  } catch (e) {
    await dispose();
    throw e;
  }
}

interface DockerManifestEntry {
  readonly Config: string;
  readonly RepoTags: string[];
  readonly Layers: string[];
}

function parseDockerManifest(bytes: Buffer, where: string): DockerManifestEntry[] {
  const bad = (why: string): A3sError =>
    new A3sError("EIMAGE", `${where}: manifest.json ${why}`, { subject: where, hint: "the archive is damaged or not from docker save" });
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString("utf8"));
  } catch (e) {
    throw bad(`is not valid JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(doc) || doc.length === 0) throw bad("is not a non-empty array");
  return doc.map((e: unknown, i) => {
    const o = e as Record<string, unknown>;
    if (typeof o !== "object" || o === null) throw bad(`entry ${i} is not an object`);
    const strings = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === "string");
    if (typeof o.Config !== "string") throw bad(`entry ${i} has no Config`);
    if (!strings(o.Layers)) throw bad(`entry ${i} has no Layers list`);
    if (o.RepoTags !== undefined && o.RepoTags !== null && !strings(o.RepoTags)) throw bad(`entry ${i} has a bad RepoTags`);
    return { Config: o.Config, Layers: o.Layers, RepoTags: (o.RepoTags as string[] | null | undefined) ?? [] };
  });
}

function pickEntry(entries: DockerManifestEntry[], ref: string | undefined, label: string): DockerManifestEntry {
  const tags = entries.flatMap((e) => e.RepoTags);
  if (ref === undefined) {
    if (entries.length === 1) return entries[0] as DockerManifestEntry;
    throw new A3sError("EUSAGE", `${label} holds ${entries.length} images; name one with :TAG or :@N`, {
      subject: label,
      hint: tags.length > 0 ? `it has: ${tags.join(", ")}` : "entries are numbered from @0",
    });
  }
  const at = /^@(\d+)$/.exec(ref);
  if (at) {
    const entry = entries[Number(at[1])];
    if (!entry) throw new A3sError("ENOTFOUND", `${label}: there is no entry ${ref} (it has ${entries.length})`, { subject: ref });
    return entry;
  }
  const normal = (s: string): string => {
    try {
      return formatReference(parseReference(s));
    } catch {
      return s;
    }
  };
  const wanted = normal(ref);
  const entry = entries.find((e) => e.RepoTags.some((t) => t === ref || normal(t) === wanted));
  if (!entry) {
    throw new A3sError("ENOTFOUND", `${label}: no image tagged ${JSON.stringify(ref)} in the archive`, {
      subject: ref,
      hint: tags.length > 0 ? `it has: ${tags.join(", ")}` : "it has no tags; use :@N",
    });
  }
  return entry;
}

/** The digest a member's name carries ("blobs/sha256/HEX", "HEX.json", "HEX.tar"), if any. */
function digestInName(name: string): string | undefined {
  const blob = /^(?:\.\/)?blobs\/(sha256|sha512)\/([a-f0-9]+)$/.exec(name);
  if (blob) {
    const digest = `${blob[1]}:${blob[2]}`;
    parseDigest(digest);
    return digest;
  }
  const legacy = /(?:^|\/)([a-f0-9]{64})\.json$/.exec(name);
  return legacy ? `sha256:${legacy[1]}` : undefined;
}

/**
 * A legacy layer (ID/layer.tar) has no digest of its own in the archive.
 * `docker save` writes it uncompressed, so its digest is its diff_id and the
 * applier checks that as it reads. A compressed one (other tools) is hashed
 * here first, so it is still verified end to end.
 */
async function legacyLayerDigest(plainPath: string, member: Member, diffId: string): Promise<string> {
  const handle = await open(plainPath, "r");
  let head: Buffer;
  try {
    head = Buffer.alloc(Math.min(8, member.size));
    await handle.read(head, 0, head.length, member.offset);
  } finally {
    await handle.close();
  }
  if (supportedCompression(detectFormat(head), plainPath) === "none") return diffId;
  const hash = createHash("sha256");
  for await (const chunk of rangeStream(plainPath, member)) hash.update(chunk as Buffer);
  return `sha256:${hash.digest("hex")}`;
}

function rangeStream(path: string, m: Member): NodeJS.ReadableStream {
  if (m.size === 0) return Readable.from([]);
  return createReadStream(path, { start: m.offset, end: m.offset + m.size - 1, highWaterMark: 1 << 20 });
}

/** The archive uncompressed on disk: itself, or a temporary copy removed by `dispose`. */
async function plainArchive(path: string, maxBytes: number, scratchDir: string): Promise<{ plainPath: string; dispose: () => Promise<void> }> {
  const compression = supportedCompression(detectFormat(await readHead(path, 8)), path);
  if (compression === "none") return { plainPath: path, dispose: async () => {} };
  const dir = await mkdtemp(join(scratchDir, "a3s-docker-archive-"));
  const dispose = async (): Promise<void> => rm(dir, { recursive: true, force: true });
  try {
    const plainPath = join(dir, "archive.tar");
    await decompressToFile(path, plainPath, compression, { maxBytes, limitHint: "raise maxArchiveBytes if the archive is trusted and really that large" });
    return { plainPath, dispose };
  } catch (e) {
    await dispose();
    throw e;
  }
}

/** Every member of the archive by its normalised name ("a/b", no "./"), read strictly. */
async function indexMembers(plainPath: string, shownPath: string): Promise<Map<string, Member>> {
  // Messages name the user's archive, never the decompressed copy.
  const file = await ArchiveFile.open(plainPath, shownPath);
  try {
    const out = new Map<string, Member>();
    for await (const m of readTarMembers(file, { maxEntries: MAX_ARCHIVE_MEMBERS })) {
      const name = normaliseMemberName(m.name, shownPath);
      out.set(name, { kind: m.kind, offset: m.dataOffset, size: m.size, linkName: m.linkName });
    }
    return out;
  } finally {
    await file.close();
  }
}

/** "./a//b/" → "a/b"; a name that climbs out of the archive is refused. */
function normaliseMemberName(name: string, archive: string): string {
  const parts: string[] = [];
  for (const p of name.split("/")) {
    if (p === "" || p === ".") continue;
    if (p === "..") {
      if (parts.length === 0) {
        throw new A3sError("EPATH", `${archive}: member ${JSON.stringify(name)} climbs out of the archive`, { subject: name });
      }
      parts.pop();
    } else parts.push(p);
  }
  return parts.join("/");
}

/** The archive as LayoutFiles (for an OCI layout inside it) plus member access for manifest.json's names. */
function archiveFiles(
  archivePath: string,
  plainPath: string,
  members: Map<string, Member>,
): LayoutFiles & { member(name: string): Member; readMember(name: string, max: number): Promise<Buffer> } {
  /** A regular-file member, following symlinks and hardlinks inside the archive only. */
  const member = (name: string): Member => {
    let current = normaliseMemberName(name, archivePath);
    for (let hops = 0; hops <= MAX_MEMBER_LINKS; hops++) {
      const m = members.get(current);
      if (!m) {
        throw new A3sError("ENOENT", `${archivePath}: ${JSON.stringify(name)} is not in the archive`, {
          subject: name,
          hint: "the archive is incomplete or damaged",
        });
      }
      if (m.kind === "file") return m;
      if (m.kind === "symlink") current = normaliseMemberName(posix.join(posix.dirname(current), m.linkName), archivePath);
      else if (m.kind === "hardlink") current = normaliseMemberName(m.linkName, archivePath);
      else throw new A3sError("EIMAGE", `${archivePath}: ${JSON.stringify(name)} is a ${m.kind}, not a file`, { subject: name });
    }
    throw new A3sError("ELOOP", `${archivePath}: too many links resolving ${JSON.stringify(name)}`, { subject: name });
  };
  const readMember = async (name: string, max: number): Promise<Buffer> => {
    const m = member(name);
    if (m.size > max) {
      throw new A3sError("ESIZE", `${archivePath}: ${name} is larger than ${max} bytes`, { subject: name, hint: "the archive is damaged or hostile" });
    }
    const handle = await open(plainPath, "r");
    try {
      const buf = Buffer.alloc(m.size);
      const { bytesRead } = await handle.read(buf, 0, m.size, m.offset);
      if (bytesRead !== m.size) throw new A3sError("ECORRUPT", `${archivePath} is truncated inside ${name}`, { subject: archivePath });
      return buf;
    } finally {
      await handle.close();
    }
  };
  const blobName = (digest: string): string => {
    const { algorithm, hex } = parseDigest(digest);
    return `blobs/${algorithm}/${hex}`;
  };
  return {
    where: archivePath,
    member,
    readMember,
    async readRootFile(name, max) {
      return members.has(name) ? readMember(name, max) : undefined;
    },
    async blobSize(digest) {
      return members.has(blobName(digest)) ? member(blobName(digest)).size : undefined;
    },
    async openBlob(digest) {
      return rangeStream(plainPath, member(blobName(digest)));
    },
    blobLocation: (digest) => `${archivePath}: ${blobName(digest)}`,
  };
}
