import type { DirectoryInode, RootfsTree } from "../../tree/index.js";

/** A whiteout or opaque marker found in a layer, to be applied to the layers below it. */
export type Whiteout =
  | { readonly kind: "whiteout"; readonly dir: readonly string[]; readonly name: string }
  | { readonly kind: "opaque"; readonly dir: readonly string[] };

/**
 * Applies one layer's whiteouts to the tree as it stands before any of that
 * layer's entries are added: a whiteout hides only what lower layers made,
 * and an opaque directory acts as if it came first in its layer (image-spec
 * layer.md). Doing all of them before the layer's entries, whatever their
 * position in the tar, is exactly that rule.
 *
 * The directory of a whiteout is found without following any symlink. In
 * the layer's own filesystem a whiteout lives in a real directory; where the
 * lower layers have a symlink at that path, the layer's directory replaces
 * the symlink and hides nothing below it. Following the link instead would
 * let "link/.wh..wh..opq" (link → /usr) empty /usr, or "link/.wh.passwd"
 * (link → /etc) delete /etc/passwd: a whiteout through a symlinked parent
 * removes nothing. Removal never follows a final symlink either: ".wh.link"
 * removes the link, never what it points to.
 *
 * Returns how many names were removed.
 */
export function applyWhiteouts(tree: RootfsTree, whiteouts: readonly Whiteout[]): number {
  let removed = 0;
  for (const w of whiteouts) {
    const dir = physicalDirectory(tree, w.dir);
    if (!dir) continue;
    const prefix = w.dir.length === 0 ? "/" : "/" + w.dir.join("/") + "/";
    const names = w.kind === "opaque" ? [...dir.children.keys()] : dir.children.has(w.name) ? [w.name] : [];
    // The path has no symlink in it (checked above), so tree.remove deletes exactly this name.
    for (const name of names) if (tree.remove(prefix + name)) removed++;
  }
  return removed;
}

/** The directory at `parts` when every component, the last included, is a real directory (no symlink). */
function physicalDirectory(tree: RootfsTree, parts: readonly string[]): DirectoryInode | undefined {
  let dir: DirectoryInode = tree.root;
  for (const part of parts) {
    const child = dir.children.get(part);
    if (!child || child.kind !== "directory") return undefined;
    dir = child;
  }
  return dir;
}
