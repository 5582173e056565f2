import { createReadStream, createWriteStream } from "node:fs";
import { copyFile, link, lstat, mkdir, open, readdir, realpath, rename, rm, symlink, chmod, utimes, stat } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { A3sError } from "../errors.js";
import { pausePoint } from "../util/test-pause.js";
import { JOURNAL_NAME, readChangeSet, STAGING_NAME, type ChangeSet } from "./change-set.js";
const JOURNAL_TAR = "changes.tar";

export interface AppliedChangeSet {
  /** Directories, files, symlinks and hard links the set created or replaced. */
  readonly written: number;
  /** Paths removed: whiteouts, and what opaque directories no longer hold. */
  readonly removed: number;
  /** Bytes of file data written. */
  readonly bytes: number;
  /** An earlier apply to this workspace had been killed after its commit point and was finished first. */
  readonly finishedEarlier: boolean;
}

/**
 * Applies the change set at `tarPath` to the host directory `workspace`
 * (docs/security.md, "Change sets"): all of it or, when it is refused,
 * none of it.
 *
 * 1. The whole set is read and checked (change-set.ts) before anything in
 *    the workspace is touched: a set that is cut short, malformed or
 *    hostile changes nothing.
 * 2. It is copied into WORKSPACE/.a3s-apply.staging and synced, and that
 *    directory is renamed to WORKSPACE/.a3s-apply: the commit point.
 *    Killed before it, nothing was applied (the next apply removes the
 *    staging leftover); after it, everything will be.
 * 3. The journal's set is applied, by steps that each make one path what
 *    the set says, so running them again gives the same result; then the
 *    journal is removed. An apply killed during this step leaves the
 *    journal, and the next apply or run on the workspace
 *    (`finishInterruptedApply`) runs the steps again from the start,
 *    before anything else: a killed apply ends with everything applied.
 *
 * No step follows a symlink: each path's directories are checked with
 * lstat to be real directories inside the workspace, a file or symlink
 * replaces whatever is at its path by rename (which replaces a symlink, not
 * what it points to), and removal never descends through a symlink.
 * Ownership is not applied (files belong to whoever applies), and modes
 * lose their set-id and sticky bits.
 */
export async function applyChangeSet(
  tarPath: string,
  workspace: string,
  opts: { readonly label?: string; readonly signal?: AbortSignal } = {},
): Promise<AppliedChangeSet> {
  const root = await workspaceRoot(workspace);
  const finishedEarlier = await finishInterruptedApply(root);
  const label = opts.label ?? tarPath;
  await readChangeSet(tarPath, label, Buffer.byteLength(root)); // step 1: checked whole, nothing touched yet
  opts.signal?.throwIfAborted();
  const staging = join(root, STAGING_NAME);
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { mode: 0o700 });
  await copyFile(tarPath, join(staging, JOURNAL_TAR));
  await syncPath(join(staging, JOURNAL_TAR));
  await syncPath(staging);
  await pausePoint("apply-staged", opts.signal);
  opts.signal?.throwIfAborted();
  await rename(staging, join(root, JOURNAL_NAME)); // the commit point
  await syncPath(root);
  await pausePoint("apply-committed", opts.signal);
  // Past the commit point a cancellation no longer stops the apply: it is short, and stopping would only leave the journal for the next one.
  const done = await applyJournal(root, label);
  return { ...done, finishedEarlier };
}

/**
 * Finishes an apply that was killed after its commit point (a journal at
 * WORKSPACE/.a3s-apply), and removes the staging leftover of one killed
 * before it. Returns whether a journal was finished. `run` calls it before
 * it shares a workspace, so an agent never sees a half-applied set.
 */
export async function finishInterruptedApply(workspace: string): Promise<boolean> {
  const root = await workspaceRoot(workspace);
  await rm(join(root, STAGING_NAME), { recursive: true, force: true });
  const journal = join(root, JOURNAL_NAME);
  const st = await lstat(journal).catch(() => undefined);
  if (!st) return false;
  if (!st.isDirectory()) {
    throw new A3sError("ECHANGES", `${journal} is not an apply journal (it is not a directory); nothing was applied`, {
      subject: journal,
      hint: `remove ${journal} if it is not yours, then apply again`,
    });
  }
  await applyJournal(root, `the interrupted apply's journal ${join(journal, JOURNAL_TAR)}`);
  return true;
}

async function workspaceRoot(workspace: string): Promise<string> {
  const root = await realpath(workspace).catch(() => undefined);
  if (!root || !(await stat(root)).isDirectory()) {
    throw new A3sError("EUSAGE", `the workspace ${workspace} is not a directory`, { subject: workspace });
  }
  return root;
}

/** Step 3: the journal's set, applied by steps that may run again, then the journal removed. */
async function applyJournal(root: string, label: string): Promise<Omit<AppliedChangeSet, "finishedEarlier">> {
  const journal = join(root, JOURNAL_NAME);
  const tar = join(journal, JOURNAL_TAR);
  const set = await readChangeSet(tar, label, Buffer.byteLength(root));
  const apply = new Applier(root, journal, tar, set);
  const result = await apply.run();
  await rm(journal, { recursive: true, force: true });
  await syncPath(root);
  return result;
}

class Applier {
  private temps = 0;
  private removed = 0;

  constructor(
    private readonly root: string,
    private readonly journal: string,
    private readonly tar: string,
    private readonly set: ChangeSet,
  ) {}

  async run(): Promise<Omit<AppliedChangeSet, "finishedEarlier">> {
    const { entries, whiteouts, opaque } = this.set;
    // Directories first, parents before children (the set lists them by depth).
    for (const e of entries) if (e.kind === "directory") await this.directory(e.parts);
    for (const w of whiteouts) await this.remove(w);
    for (const d of opaque) await this.emptyOpaque(d);
    for (const e of entries) {
      if (e.kind === "file") await this.file(e.parts, e);
      else if (e.kind === "symlink") await this.symlink(e.parts, e.target);
      else if (e.kind === "hardlink") await this.hardlink(e.parts, e.target);
    }
    // Modes and times of directories last, deepest first: adding their entries changed their mtimes.
    for (const e of [...entries].reverse()) {
      if (e.kind !== "directory") continue;
      const p = await this.inside(e.parts);
      await chmod(p, e.mode);
      await utimes(p, e.mtime, e.mtime);
    }
    return { written: entries.length, removed: this.removed, bytes: this.set.dataBytes };
  }

  /**
   * The host path of `parts` once every directory above it is checked to be
   * a real directory (lstat: not a symlink) inside the workspace. The set's
   * directories were made real directories first, so one that is not any
   * more was changed by someone else during the apply: an error, with the
   * journal kept for the next apply to finish.
   */
  private async inside(parts: readonly string[]): Promise<string> {
    let p = this.root;
    for (const part of parts.slice(0, -1)) {
      p = join(p, part);
      const st = await lstat(p).catch(() => undefined);
      if (!st?.isDirectory()) throw this.changedUnderneath(p, st ? (st.isSymbolicLink() ? "a symlink" : "not a directory") : "gone");
    }
    return join(p, parts[parts.length - 1] as string);
  }

  /** Makes parts a real directory: whatever else is there (a file, a symlink) is removed, never followed. */
  private async directory(parts: readonly string[]): Promise<void> {
    const p = await this.inside(parts);
    const st = await lstat(p).catch(() => undefined);
    // Writable by its owner while the set is applied (a run again after a kill may meet the set's
    // own read-only modes); the last step gives every directory of the set its mode.
    if (st?.isDirectory()) {
      if ((st.mode & 0o700) !== 0o700) await chmod(p, (st.mode & 0o7777) | 0o700);
      return;
    }
    if (st) await rm(p, { recursive: true, force: true });
    await mkdir(p, { mode: 0o700 });
  }

  /** A whiteout: the path is removed if it is there; a symlink is removed itself. */
  private async remove(parts: readonly string[]): Promise<void> {
    const p = await this.inside(parts);
    if (await lstat(p).catch(() => undefined)) {
      await rm(p, { recursive: true, force: true });
      this.removed++;
    }
  }

  /** An opaque directory keeps only the entries the set lists directly in it. */
  private async emptyOpaque(dir: readonly string[]): Promise<void> {
    const p = await this.inside([...dir, "."]);
    const keep = new Set(this.set.entries.filter((e) => e.parts.length === dir.length + 1 && dir.every((d, i) => e.parts[i] === d)).map((e) => e.parts[dir.length]));
    for (const name of await readdir(p)) {
      if (keep.has(name) || (dir.length === 0 && (name === JOURNAL_NAME || name === STAGING_NAME))) continue;
      await rm(join(p, name), { recursive: true, force: true });
      this.removed++;
    }
  }

  /** Made beside, in the journal, then renamed over the path: a reader sees the old file or the new one. */
  private async file(parts: readonly string[], e: { mode: number; mtime: number; size: number; dataOffset: number }): Promise<void> {
    const temp = join(this.journal, `new-${this.temps++}`);
    await rm(temp, { force: true });
    const out = createWriteStream(temp, { flags: "wx", mode: 0o600 });
    if (e.size > 0) await pipeline(createReadStream(this.tar, { start: e.dataOffset, end: e.dataOffset + e.size - 1 }), out);
    else await new Promise<void>((resolve, reject) => out.end(() => resolve()).on("error", reject));
    await chmod(temp, e.mode);
    await utimes(temp, e.mtime, e.mtime);
    await this.replace(parts, temp);
  }

  private async symlink(parts: readonly string[], target: string): Promise<void> {
    const temp = join(this.journal, `new-${this.temps++}`);
    await rm(temp, { force: true });
    await symlink(target, temp);
    await this.replace(parts, temp);
  }

  /**
   * A second name for a file this apply wrote at `target` (the set names
   * it earlier, change-set.ts): linked beside, in the journal, then renamed
   * over the path. What is at `target` must still be a regular file, so
   * the link never gives a name to anything the set did not write.
   */
  private async hardlink(parts: readonly string[], target: readonly string[]): Promise<void> {
    const from = await this.inside(target);
    const st = await lstat(from).catch(() => undefined);
    if (!st?.isFile()) throw this.changedUnderneath(from, st ? "not a regular file" : "gone");
    const temp = join(this.journal, `new-${this.temps++}`);
    await rm(temp, { force: true });
    await link(from, temp).catch((e: unknown) => {
      throw this.cannot(`link ${from}`, from, e);
    });
    await this.replace(parts, temp);
  }

  private async replace(parts: readonly string[], temp: string): Promise<void> {
    const p = await this.inside(parts);
    const st = await lstat(p).catch(() => undefined);
    // rename cannot put a file over a directory: a directory there is removed first.
    if (st?.isDirectory()) await rm(p, { recursive: true, force: true });
    try {
      await rename(temp, p);
    } catch (e) {
      throw this.cannot(`put ${p} in place`, p, e);
    }
  }

  /** A path the apply made or checked is not what it was: someone else changed the workspace meanwhile. */
  private changedUnderneath(path: string, what: string): A3sError {
    return new A3sError("ECHANGES", `${path} is ${what}: the workspace changed while a change set was applied`, {
      subject: path,
      hint: `the apply's journal ${join(this.root, JOURNAL_NAME)} is kept: apply again (or run) on this workspace to finish it`,
    });
  }

  /** A step's system call failed: `what` names the step. */
  private cannot(what: string, path: string, e: unknown): A3sError {
    return new A3sError("ECHANGES", `cannot ${what}: ${(e as Error).message}`, {
      subject: path,
      hint: (e as NodeJS.ErrnoException).code === "EXDEV" ? "the workspace spans file systems (a mount inside it): apply does not write across them" : `the journal ${this.journal} is kept: apply again to finish`,
      cause: e,
    });
  }
}

/** fsync a file or directory: what was written or renamed there survives a crash. */
async function syncPath(path: string): Promise<void> {
  const h = await open(path, "r");
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}
