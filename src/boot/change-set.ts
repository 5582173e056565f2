import { A3sError, isA3sError } from "../errors.js";
import { ArchiveFile } from "../formats/archive/index.js";
import { readTarMembers } from "../formats/tar/index.js";
import { classifyLayerName } from "../oci/layers/layer-names.js";

/**
 * The name of the journal directory an apply keeps at the top of the
 * workspace while it runs (change-set-apply.ts). A change set may not name
 * it: nothing in a set can reach the apply's own bookkeeping.
 */
export const JOURNAL_NAME = ".a3s-apply";
/** Where an apply stages its journal before the commit point (renamed to JOURNAL_NAME there). */
export const STAGING_NAME = `${JOURNAL_NAME}.staging`;
/** Linux's PATH_MAX, counting the terminating NUL: the longest path a system call takes. */
const PATH_MAX = 4096;
/** Members a change set may have: far above any project tree, bounded so a hostile set cannot exhaust memory. */
export const MAX_CHANGE_SET_ENTRIES = 1_000_000;

/** One thing a change set makes exist at `parts` (relative to the workspace). */
export type ChangeEntry =
  | { readonly kind: "directory"; readonly parts: readonly string[]; readonly mode: number; readonly mtime: number }
  | { readonly kind: "file"; readonly parts: readonly string[]; readonly mode: number; readonly mtime: number; readonly size: number; readonly dataOffset: number }
  | { readonly kind: "symlink"; readonly parts: readonly string[]; readonly target: string }
  /** A second name for `target`, a regular file this same set writes earlier (the guest's hard links). */
  | { readonly kind: "hardlink"; readonly parts: readonly string[]; readonly target: readonly string[] };

/**
 * A change set, read and checked whole (docs/guest-protocol.md §8, "The change set"): what it
 * creates or replaces, what it deletes (whiteouts) and which directories
 * lose every entry it does not list (opaque directories).
 */
export interface ChangeSet {
  /** In the order they are applied: directories by depth, then the rest in the tar's order. */
  readonly entries: readonly ChangeEntry[];
  readonly whiteouts: readonly (readonly string[])[];
  readonly opaque: readonly (readonly string[])[];
  /** Bytes of file data. */
  readonly dataBytes: number;
}

const key = (parts: readonly string[]): string => parts.join("/");

/**
 * Reads the change-set tar at `path` (named `label` in messages) and checks
 * every rule before anything is applied, each rule stopping an attack on
 * the host's workspace by whoever wrote the set (the guest is untrusted):
 *
 * - the tar is parsed strictly and must be whole (its end-of-archive
 *   marker): a set cut short is refused, never half applied;
 * - names follow layer rules (layer-names.ts): no "..", no NUL, no
 *   component over NAME_MAX; a leading "/" is dropped, so an absolute name
 *   stays inside the workspace; and the whole host path must fit PATH_MAX
 *   once joined to `workspaceLength` bytes of workspace;
 * - only directories, regular files, symlinks, whiteouts, and hard links to
 *   a regular file of the set itself, named earlier in it: a hard link to
 *   anything else could alias a host file, and a device node would give the
 *   host a device, so both are refused;
 * - every entry's directory is itself a directory entry of the set: the
 *   applier creates directories only from the set, never through anything
 *   that already exists on the host as a symlink;
 * - nothing is named twice, nothing is both created and whited out, and
 *   nothing sits under a whiteout, a file or a symlink of the set;
 * - the journal's name (JOURNAL_NAME) at the top is refused.
 *
 * Symlink targets are kept as they are: a symlink is never followed by
 * the applier, and one that points out of the workspace is what a live
 * workspace would hold too.
 */
export async function readChangeSet(path: string, label: string, workspaceLength = 0): Promise<ChangeSet> {
  const file = await ArchiveFile.open(path, label);
  try {
    const bad = (name: string, why: string): A3sError =>
      new A3sError("ECHANGES", `${label}: member ${JSON.stringify(name)}: ${why}`, {
        subject: label,
        hint: "the change set is malformed or hostile: nothing was applied",
      });
    const entries: ChangeEntry[] = [];
    const whiteouts: string[][] = [];
    const opaque: string[][] = [];
    /** What the set says each path is: "d" (directory), "f" (file or symlink), "w" (whited out). */
    const seen = new Map<string, "d" | "f" | "w">();
    /** The set's regular files so far: the only targets a hard link may have. */
    const regularFiles = new Set<string>();
    let dataBytes = 0;
    for await (const m of readTarMembers(file, { maxEntries: MAX_CHANGE_SET_ENTRIES })) {
      const name = changeSetName(m.name, label);
      if (name.kind === "aufs") throw bad(m.name, "AUFS metadata has no place in a change set");
      const parts = name.kind === "entry" ? [...name.parts] : name.kind === "whiteout" ? [...name.dir, name.name] : [...name.dir];
      if (parts[0] === JOURNAL_NAME || parts[0] === STAGING_NAME) throw bad(m.name, `${parts[0]} is the apply's own journal and cannot be changed`);
      if (workspaceLength + 1 + Buffer.byteLength(key(parts)) + 1 > PATH_MAX) throw bad(m.name, `the path in the workspace would be longer than PATH_MAX (${PATH_MAX})`);
      if (name.kind !== "entry" && (m.kind !== "file" || m.size !== 0)) throw bad(m.name, "a whiteout must be an empty regular file");
      if (name.kind === "opaque") {
        if (seen.get(key(parts)) !== "d") throw bad(m.name, "an opaque marker must follow its directory's own entry");
        opaque.push(parts);
        continue;
      }
      if (parts.length === 0) {
        if (m.kind !== "directory") throw bad(m.name, "the workspace itself can only be a directory");
        continue; // the workspace's own entry: its metadata stays the host's
      }
      for (let i = 1; i < parts.length; i++) {
        const what = seen.get(key(parts.slice(0, i)));
        if (what !== "d") {
          throw bad(m.name, what === undefined ? `its directory ${key(parts.slice(0, i))} is not in the change set` : `it is under ${key(parts.slice(0, i))}, which the set makes a ${what === "w" ? "whiteout" : "file or symlink"}`);
        }
      }
      if (seen.has(key(parts))) throw bad(m.name, "the change set names this path twice");
      if (name.kind === "whiteout") {
        seen.set(key(parts), "w");
        whiteouts.push(parts);
        continue;
      }
      const mode = m.meta.mode & 0o777; // set-id and sticky bits never come from a guest
      const mtime = m.meta.mtime;
      if (m.kind === "directory") {
        seen.set(key(parts), "d");
        entries.push({ kind: "directory", parts, mode, mtime });
      } else if (m.kind === "file") {
        seen.set(key(parts), "f");
        regularFiles.add(key(parts));
        entries.push({ kind: "file", parts, mode, mtime, size: m.size, dataOffset: m.dataOffset });
        dataBytes += m.size;
      } else if (m.kind === "symlink") {
        if (m.linkName === "" || m.linkName.includes("\0")) throw bad(m.name, "a symlink needs a target without NUL bytes");
        seen.set(key(parts), "f");
        entries.push({ kind: "symlink", parts, target: m.linkName });
      } else if (m.kind === "hardlink") {
        const target = changeSetName(m.linkName, label);
        if (target.kind !== "entry" || !regularFiles.has(key(target.parts))) {
          throw bad(m.name, `a hard link may only name a regular file written earlier in the same change set, not ${JSON.stringify(m.linkName)}`);
        }
        seen.set(key(parts), "f");
        entries.push({ kind: "hardlink", parts, target: [...target.parts] });
      } else {
        throw bad(m.name, `a ${m.kind} has no place in a change set (directories, regular files, symlinks, whiteouts and hard links to the set's own files only)`);
      }
    }
    const dirs = entries.filter((e) => e.kind === "directory").sort((a, b) => a.parts.length - b.parts.length);
    return { entries: [...dirs, ...entries.filter((e) => e.kind !== "directory")], whiteouts, opaque, dataBytes };
  } finally {
    await file.close();
  }
}

/** A member's name by the layer rules (layer-names.ts), its refusal worded for a change set. */
function changeSetName(name: string, label: string): ReturnType<typeof classifyLayerName> {
  try {
    return classifyLayerName(name, label);
  } catch (e) {
    if (!isA3sError(e, "EPATH")) throw e;
    throw new A3sError("ECHANGES", e.message.replace(/ in a layer$/, ""), {
      subject: label,
      hint: "the change set is malformed or hostile: nothing was applied",
      cause: e,
    });
  }
}
