import { A3sError, isA3sError } from "../../errors.js";
import { ArchiveFile, type ArchiveSource } from "../../formats/archive/index.js";
import { addTarMember, readTarMembers, type TarMember } from "../../formats/tar/index.js";
import { checkVerifiedIdentity, type RootfsTree } from "../../tree/index.js";
import type { FileIdentity } from "../../util/file-identity.js";
import { checkLinkTarget, classifyLayerName } from "./layer-names.js";
import { applyWhiteouts, type Whiteout } from "./layer-whiteout.js";

export interface ApplyLayerOptions {
  /** Names the layer in messages, e.g. "docker.io/library/debian:12 layer 2/3 sha256:…". */
  readonly subject: string;
  /** Tar members this layer may still have (the image's entry budget minus earlier layers). */
  readonly maxEntries: number;
}

export interface AppliedLayer {
  /** Members added to the tree. */
  readonly entries: number;
  /** Whiteout and opaque markers in the layer. */
  readonly whiteouts: number;
  /** Names of lower layers the whiteouts removed. */
  readonly removed: number;
  /** Members counted against the entry budget (extended headers excluded). */
  readonly members: number;
}

/**
 * Most entries of one layer kept in memory between the two passes (a few
 * hundred bytes each); a larger layer has its headers read a second time
 * instead, so memory stays bounded whatever the layer.
 */
const KEPT_MEMBERS = 50_000;

/** The first pass over a layer's headers: its names checked, its whiteouts found. */
export interface ScannedLayer {
  readonly whiteouts: readonly Whiteout[];
  /** The entries to add, in order; undefined for a layer too large to keep (read again in the second pass). */
  readonly kept: readonly { member: TarMember; parts: readonly string[] }[] | undefined;
  /** Members counted against the entry budget (extended headers excluded). */
  readonly members: number;
}

/**
 * Applies one uncompressed layer tar (in the content store) to the tree.
 *
 * Two passes over the tar's headers, never its data: the first (scanLayer)
 * checks every name and collects the whiteouts, which are then applied to
 * the lower layers; the second adds the layer's entries (those the first
 * pass kept, or, for a very large layer, read again). File contents become
 * ranges of the cached tar. The tar is parsed strictly (see
 * `readTarMembers`) and every entry goes through the tree's add* methods,
 * which resolve each path afresh with chroot semantics: no resolution is
 * cached across entries, so a directory replaced by a symlink halfway
 * through a layer cannot redirect the entries after it anywhere but inside
 * the tree, and the root can never become anything but a directory.
 */
export async function applyLayer(
  tree: RootfsTree,
  layer: { readonly path: string; readonly identity?: FileIdentity },
  opts: ApplyLayerOptions,
): Promise<AppliedLayer> {
  const file = await ArchiveFile.open(layer.path, opts.subject);
  try {
    // The headers are read from the very file whose digest was checked.
    if (layer.identity) checkVerifiedIdentity(await file.identity(), layer.identity, layer.path, opts.subject);
    return await applyScannedLayer(tree, layer, await scanLayer(file, opts), opts);
  } catch (e) {
    throw inLayer(e, layer.path, opts.subject);
  } finally {
    await file.close();
  }
}

/**
 * The first pass: every member's name classified and checked, the
 * whiteouts collected, and the entries kept (up to KEPT_MEMBERS) so the
 * second pass adds them without reading and parsing the headers again.
 * `source` may be the layer still being decompressed (GrowingArchiveFile);
 * what this returns is then used only once the layer's digest matched.
 */
export async function scanLayer(source: ArchiveSource, opts: ApplyLayerOptions): Promise<ScannedLayer> {
  const whiteouts: Whiteout[] = [];
  let members = 0;
  let kept: { member: TarMember; parts: readonly string[] }[] | undefined = [];
  for await (const m of readTarMembers(source, { maxEntries: opts.maxEntries })) {
    members++;
    const name = classifyLayerName(m.name, opts.subject);
    if (name.kind === "whiteout" || name.kind === "opaque") whiteouts.push(name);
    else if (name.kind === "entry") {
      if (m.kind === "hardlink") checkLinkTarget(m.linkName, m.name, opts.subject);
      if (kept && kept.length < KEPT_MEMBERS) kept.push({ member: m, parts: name.parts });
      else kept = undefined;
    }
  }
  return { whiteouts, kept, members };
}

/**
 * The second pass: the whiteouts applied to the lower layers, then the
 * layer's entries added, their contents ranges of `layer.path` (the
 * verified tar in the store) bound to `layer.identity`.
 */
export async function applyScannedLayer(
  tree: RootfsTree,
  layer: { readonly path: string; readonly identity?: FileIdentity },
  scanned: ScannedLayer,
  opts: ApplyLayerOptions,
): Promise<AppliedLayer> {
  try {
    const removed = applyWhiteouts(tree, scanned.whiteouts);
    let entries = 0;
    const add = (m: TarMember, parts: readonly string[]): void => {
      const path = "/" + parts.join("/");
      const linkName = m.kind === "hardlink" ? checkLinkTarget(m.linkName, m.name, opts.subject) : m.linkName;
      // The tree checks where the entry really lands (after its parents'
      // symlinks) against PATH_MAX, NAME_MAX and its depth and entry bounds.
      addTarMember(tree, { ...m, name: path, linkName }, layer.path, opts.subject, layer.identity);
      entries++;
    };
    if (scanned.kept) {
      for (const k of scanned.kept) add(k.member, k.parts);
    } else {
      const file = await ArchiveFile.open(layer.path, opts.subject);
      try {
        if (layer.identity) checkVerifiedIdentity(await file.identity(), layer.identity, layer.path, opts.subject);
        for await (const m of readTarMembers(file, { maxEntries: opts.maxEntries })) {
          const name = classifyLayerName(m.name, opts.subject);
          if (name.kind === "entry") add(m, name.parts);
        }
      } finally {
        await file.close();
      }
    }
    return { entries, whiteouts: scanned.whiteouts.length, removed, members: scanned.members };
  } catch (e) {
    throw inLayer(e, layer.path, opts.subject);
  }
}

/** Names the layer (not the cache file) in an error that came from reading its tar. */
export function inLayer(e: unknown, archivePath: string, subject: string): unknown {
  if (!isA3sError(e) || e.message.startsWith(subject)) return e;
  const message = e.message.startsWith(archivePath) ? e.message.slice(archivePath.length + 2) : e.message;
  return new A3sError(e.code, `${subject}: ${message}`, {
    ...(e.subject === undefined || e.subject === archivePath ? { subject } : { subject: e.subject }),
    ...(e.hint === undefined ? {} : { hint: e.hint }),
    cause: e,
  });
}
