import { randomBytes } from "node:crypto";
import { link, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { A3sError } from "../errors.js";
import { formatProcessToken, parseProcessToken, processAlive, processToken, type ProcessToken } from "./process-token.js";

export interface LockOptions {
  /** Stops waiting (EABORTED). */
  readonly signal?: AbortSignal;
  /** Told once, when the lock is held by another live process and this one waits for it. */
  readonly onWait?: (owner: ProcessToken) => void;
}

/** The first wait between two looks at a held lock; it grows to MAX_POLL_MS. */
const FIRST_POLL_MS = 10;
const MAX_POLL_MS = 200;

/**
 * A lock between processes on one host, as a file: whoever creates it holds
 * it. Node has no flock(2), so the file itself is the lock, created whole in
 * one link(2) (which fails when the name exists, on every local filesystem
 * and on NFS), holding its owner's process token and a nonce.
 *
 * A lock whose owner has died (killed, crashed, the host rebooted) is stale
 * and is broken by the next process that wants it: the owner's pid, start
 * time and boot id say whether it still runs (util/process-token.ts). Two
 * processes breaking the same stale lock at once is safe: each moves the
 * file aside before removing it, and one that finds it moved a fresh lock
 * (not the stale one it saw) puts it back.
 *
 * Waiting is polling, with a growing interval: the holders here fetch blobs
 * or record a use, and a waiter that learns of the release 200 ms late
 * costs nothing next to a download.
 */
export class FileLock {
  private released = false;

  private constructor(
    readonly path: string,
    private readonly content: string,
  ) {}

  static async acquire(path: string, opts: LockOptions = {}): Promise<FileLock> {
    const content = `${formatProcessToken(processToken())} ${randomBytes(8).toString("hex")}\n`;
    let poll = FIRST_POLL_MS;
    let told = false;
    for (;;) {
      if (opts.signal?.aborted) throw new A3sError("EABORTED", `stopped waiting for the lock ${path}`, { subject: path });
      if (await createWhole(path, content)) return new FileLock(path, content);
      const held = await readFile(path, "utf8").catch(() => undefined);
      if (held === undefined) continue; // released meanwhile
      const owner = lockOwner(held);
      if (!owner || !processAlive(owner)) {
        await breakStale(path, held);
        continue;
      }
      if (!told) {
        told = true;
        opts.onWait?.(owner);
      }
      await sleep(poll, undefined, opts.signal ? { signal: opts.signal } : {}).catch(() => undefined);
      poll = Math.min(MAX_POLL_MS, Math.round(poll * 1.5));
    }
  }

  /** Runs `fn` holding the lock at `path`. */
  static async with<T>(path: string, fn: () => Promise<T>, opts: LockOptions = {}): Promise<T> {
    const lock = await FileLock.acquire(path, opts);
    try {
      return await fn();
    } finally {
      await lock.release();
    }
  }

  /**
   * Removes the lock, unless it is no longer ours: a process that wrongly
   * judged us dead may have broken it and taken it, and its lock is not ours
   * to remove.
   */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    const now = await readFile(this.path, "utf8").catch(() => undefined);
    if (now === this.content) await rm(this.path, { force: true });
  }
}

/**
 * Removes the lock at `path` if its owner is no longer running (a cleanup
 * pass; a process that wants the lock breaks a stale one itself). True when
 * it was stale and is gone.
 */
export async function removeStaleLock(path: string): Promise<boolean> {
  const held = await readFile(path, "utf8").catch(() => undefined);
  if (held === undefined) return false;
  const owner = lockOwner(held);
  if (owner && processAlive(owner)) return false;
  await breakStale(path, held);
  return true;
}

/** The owner a lock file names: its first three fields. */
function lockOwner(content: string): ProcessToken | undefined {
  return parseProcessToken(content.split(" ").slice(0, 3).join(" "));
}

/** Creates `path` holding `content`, whole, or returns false when it exists. */
async function createWhole(path: string, content: string): Promise<boolean> {
  const tmp = `${path}.new-${process.pid}-${randomBytes(6).toString("hex")}`;
  try {
    await writeFile(tmp, content, { flag: "wx" });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    await mkdir(dirname(path), { recursive: true });
    await writeFile(tmp, content, { flag: "wx" });
  }
  try {
    await link(tmp, path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw e;
  } finally {
    await rm(tmp, { force: true });
  }
}

/** Removes a lock whose owner is dead, if it is still the one that was read. */
async function breakStale(path: string, seen: string): Promise<void> {
  const aside = `${path}.stale-${process.pid}-${randomBytes(6).toString("hex")}`;
  try {
    await rename(path, aside);
  } catch {
    return; // someone else broke or released it
  }
  const moved = await readFile(aside, "utf8").catch(() => undefined);
  if (moved !== undefined && moved !== seen) {
    // Between our read and our rename, the stale lock was broken by another
    // process and a live one took the name: put its lock back. If the name
    // was taken yet again meanwhile, that holder keeps it.
    await link(aside, path).catch(() => undefined);
  }
  await rm(aside, { force: true });
}
