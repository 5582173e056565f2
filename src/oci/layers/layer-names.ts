import { A3sError } from "../../errors.js";

/** Prefix of a whiteout file (image-spec layer.md "Whiteouts"). */
export const WHITEOUT_PREFIX = ".wh.";
/** Name of the opaque whiteout: every lower-layer child of its directory is hidden. */
export const OPAQUE_WHITEOUT = ".wh..wh..opq";
/** Linux's NAME_MAX: the longest single path component. */
const NAME_MAX = 255;
/** A string of at most this many UTF-16 units is at most NAME_MAX bytes of UTF-8. */
const MAX_UNITS_UNDER_NAME_MAX = Math.floor(NAME_MAX / 3);
/** AUFS bookkeeping names (".wh..wh.plnk", ".wh..wh.aufs") that old Docker exports carry; Docker skips them. */
const AUFS_META_PREFIX = ".wh..wh.";

/** What one layer member's name means. */
export type LayerName =
  /** An ordinary entry at `parts`. */
  | { readonly kind: "entry"; readonly parts: readonly string[] }
  /** `.wh.NAME`: hide NAME of the directory `dir` in lower layers. */
  | { readonly kind: "whiteout"; readonly dir: readonly string[]; readonly name: string }
  /** `.wh..wh..opq`: hide every lower-layer child of `dir`. */
  | { readonly kind: "opaque"; readonly dir: readonly string[] }
  /** AUFS metadata, skipped as Docker skips it. */
  | { readonly kind: "aufs" };

/**
 * Classifies a layer member name and checks it, before anything uses it.
 *
 * Rules, each stopping an attack:
 * - a ".." component is refused outright, wherever it is: "a/../../etc" is a
 *   path-traversal attempt, and even a harmless-looking "a/../b" is not
 *   something any image builder writes;
 * - a leading "/" is dropped (as GNU tar and containerd do), so an absolute
 *   name lands inside the rootfs, never on the host;
 * - a whiteout must name something: ".wh." (nothing), ".wh.." (the
 *   directory itself) and ".wh..." (its parent) are errors, so a hostile
 *   whiteout can never delete the directory it sits in or anything above;
 * - a component longer than NAME_MAX could never be written to a real
 *   filesystem; refusing it here makes that a clear error, not a failed output;
 * - a whiteout is a file: ".wh.x/y" (a whiteout used as a directory) is refused;
 * - no name under a whiteout survives as an entry, so no ".wh." file reaches the tree.
 */
export function classifyLayerName(name: string, subject: string): LayerName {
  const bad = (why: string): A3sError =>
    new A3sError("EPATH", `${subject}: member ${JSON.stringify(name)}: ${why}`, {
      subject: name,
      hint: "the layer is malformed or hostile",
    });
  if (name.includes("\0")) throw bad("the name contains a NUL byte");
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw bad("a '..' component (path traversal) is not allowed in a layer");
  // Most names are short and no whiteout: then no part can be too long
  // (UTF-8 takes at most 3 bytes per UTF-16 unit) and none is special.
  if (name.length <= MAX_UNITS_UNDER_NAME_MAX && !name.includes(WHITEOUT_PREFIX)) return { kind: "entry", parts };
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] as string;
    if (part.length > MAX_UNITS_UNDER_NAME_MAX && Buffer.byteLength(part) > NAME_MAX) {
      throw bad(`a component is longer than ${NAME_MAX} bytes, which no Linux filesystem can hold`);
    }
    if (!part.startsWith(WHITEOUT_PREFIX)) continue;
    if (part.startsWith(AUFS_META_PREFIX) && part !== OPAQUE_WHITEOUT) return { kind: "aufs" };
    if (i !== parts.length - 1) throw bad(`the whiteout ${part} is used as a directory`);
    const dir = parts.slice(0, -1);
    if (part === OPAQUE_WHITEOUT) return { kind: "opaque", dir };
    const hidden = part.slice(WHITEOUT_PREFIX.length);
    if (hidden === "" || hidden === "." || hidden === "..") {
      throw bad(`invalid whiteout ${JSON.stringify(part)}: it names ${hidden === "" ? "nothing" : "a directory itself or its parent"}`);
    }
    return { kind: "whiteout", dir, name: hidden };
  }
  return { kind: "entry", parts };
}

/** A hardlink target inside a layer, checked like a name: no "..", never a whiteout. */
export function checkLinkTarget(linkName: string, member: string, subject: string): string {
  const bad = (why: string): A3sError =>
    new A3sError("EPATH", `${subject}: hardlink ${JSON.stringify(member)} → ${JSON.stringify(linkName)}: ${why}`, {
      subject: member,
      hint: "the layer is malformed or hostile",
    });
  const parts = linkName.split("/").filter((p) => p !== "" && p !== ".");
  if (linkName.includes("\0")) throw bad("the target contains a NUL byte");
  if (parts.length === 0) throw bad("the target is the root");
  if (parts.includes("..")) throw bad("a '..' component (path traversal) is not allowed");
  if (parts.some((p) => p.startsWith(WHITEOUT_PREFIX))) throw bad("the target is a whiteout, which never exists");
  return "/" + parts.join("/");
}
