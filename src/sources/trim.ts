import { normaliseRootfsPath, type RootfsTree } from "../tree/index.js";

export type TrimProfile = "none" | "docs" | "minimal";

/** One thing a trim profile removes: everything below `under`, except what `keep` says. */
export interface TrimRule {
  readonly under: string;
  readonly why: string;
  readonly keep?: (path: string) => boolean;
}

const DOCS: TrimRule[] = [
  // Copyright files stay: they are the licences of what remains.
  { under: "/usr/share/doc", why: "documentation", keep: (p) => /\/copyright$/.test(p) },
  { under: "/usr/share/man", why: "man pages" },
  { under: "/usr/share/info", why: "info pages" },
];

/**
 * The trim profiles, documented in docs/sources.md. A profile removes only
 * entries below its rules' directories (the directories themselves stay),
 * and nothing else.
 */
export const TRIM_PROFILES: Record<TrimProfile, readonly TrimRule[]> = {
  none: [],
  docs: DOCS,
  minimal: [
    ...DOCS,
    { under: "/usr/share/locale", why: "message translations (the C locale needs none)" },
    { under: "/usr/lib/locale", why: "compiled locales other than C", keep: (p) => /^\/usr\/lib\/locale\/C\.[^/]*(\/|$)/.test(p) },
    { under: "/var/lib/apt/lists", why: "apt package lists", keep: (p) => p === "/var/lib/apt/lists/partial" || p === "/var/lib/apt/lists/lock" },
    { under: "/var/cache/apt", why: "apt caches", keep: (p) => p === "/var/cache/apt/archives" || p === "/var/cache/apt/archives/partial" || p === "/var/cache/apt/archives/lock" },
    { under: "/var/cache/debconf", why: "debconf backups", keep: (p) => !p.endsWith("-old") },
    { under: "/var/log", why: "logs" },
  ],
};

/** Whether a path falls under a rule and is not kept by it. */
export function trimmedBy(rules: readonly TrimRule[], path: string): TrimRule | undefined {
  return rules.find((r) => path.startsWith(r.under + "/") && !(r.keep?.(path) ?? false));
}

/**
 * Applies a trim profile. Files, links and devices a rule covers are
 * removed; then directories under a rule's root that were left empty, unless
 * kept. Returns the removed paths.
 */
export function trimTree(tree: RootfsTree, profile: TrimProfile): string[] {
  const rules = TRIM_PROFILES[profile].map((r) => ({ ...r, under: normaliseRootfsPath(r.under) }));
  if (rules.length === 0) return [];
  const removed: string[] = [];
  const entries = tree.entries();
  for (const e of entries) {
    if (e.kind !== "directory" && trimmedBy(rules, e.path) && tree.remove(e.path)) removed.push(e.path);
  }
  for (let i = entries.length - 1; i >= 0; i--) {
    const e = entries[i];
    if (!e || e.kind !== "directory" || !trimmedBy(rules, e.path)) continue;
    const inode = tree.lookup(e.path, false);
    if (inode?.kind === "directory" && inode.children.size === 0 && tree.remove(e.path)) removed.push(e.path);
  }
  return removed;
}
