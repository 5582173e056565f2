import type { ObservedEntry } from "./image-sample.js";

export interface CompareOptions {
  /** Paths the image may have that the tree does not (ext4's /lost+found). */
  readonly extra?: readonly string[];
}

/**
 * Differences between what a reader saw in an image and what the tree says,
 * one line each ("PATH field: got X, want Y"); empty when they agree. Hardlinks
 * are compared as groups: the names that share a reader identity must be
 * exactly the names that share a tree inode.
 */
export function imageDifferences(
  got: ReadonlyMap<string, ObservedEntry>,
  want: ReadonlyMap<string, ObservedEntry>,
  opts: CompareOptions = {},
): string[] {
  const diffs: string[] = [];
  const extra = new Set(opts.extra ?? []);
  for (const path of got.keys()) {
    if (!want.has(path) && !extra.has(path)) diffs.push(`${path}: in the image but not in the tree`);
  }
  const fields = ["kind", "mode", "uid", "gid", "mtime", "sha256", "target", "rdev"] as const;
  for (const [path, w] of want) {
    const g = got.get(path);
    if (!g) {
      diffs.push(`${path}: missing from the image`);
      continue;
    }
    for (const f of fields) {
      if (g[f] !== w[f]) {
        const show = (v: unknown): string => (f === "mode" && typeof v === "number" ? "0" + v.toString(8) : JSON.stringify(v));
        diffs.push(`${path} ${f}: got ${show(g[f])}, want ${show(w[f])}`);
      }
    }
    if (g.xattrs !== undefined && JSON.stringify(sorted(g.xattrs)) !== JSON.stringify(sorted(w.xattrs ?? {}))) {
      diffs.push(`${path} xattrs: got ${JSON.stringify(sorted(g.xattrs))}, want ${JSON.stringify(sorted(w.xattrs ?? {}))}`);
    }
  }
  const groups = (m: ReadonlyMap<string, ObservedEntry>): string[] => {
    const byId = new Map<string, string[]>();
    for (const [path, o] of m) {
      if (o.kind === "directory" || !want.has(path)) continue;
      byId.set(o.identity, [...(byId.get(o.identity) ?? []), path]);
    }
    return [...byId.values()].filter((g) => g.length > 1).map((g) => g.sort().join(" = ")).sort();
  };
  const gotLinks = groups(got);
  const wantLinks = groups(want);
  if (JSON.stringify(gotLinks) !== JSON.stringify(wantLinks)) {
    diffs.push(`hardlinks: got ${JSON.stringify(gotLinks)}, want ${JSON.stringify(wantLinks)}`);
  }
  return diffs;
}

function sorted(o: Record<string, string>): [string, string][] {
  return Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1));
}
