import { randomBytes } from "node:crypto";
import { unlinkSync } from "node:fs";
import { appendFile, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { formatProcessToken, parseProcessToken, processAlive, processToken } from "../../util/process-token.js";

/** This process's own record files, removed when it exits. */
const ownRecords = new Set<string>();
let exitHookInstalled = false;

function removeOwnRecordsAtExit(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const f of ownRecords) {
      try {
        unlinkSync(f);
      } catch {
        // Already gone.
      }
    }
  });
}

/**
 * Which blobs of a store running processes use, so `cache gc` leaves them
 * alone: ROOT/uses/PID-NONCE, one file per store object of a process, whose
 * first line is the process's token (pid, start time, boot) and whose other
 * lines are the digests it has used, appended as it goes.
 *
 * The record is removed when the process exits; one that a killed process
 * left behind names a process that is no longer running and is ignored (and
 * removed) by the next `inUse()`. A record is only ever appended to by its
 * own process, so no lock is needed for writing; the store takes a lock per
 * digest around the append so that gc, which takes the same lock before it
 * deletes, either sees the use or deletes before it (content-store.ts).
 */
export class StoreUses {
  private file: string | undefined;
  private readonly recorded = new Set<string>();

  constructor(readonly dir: string) {}

  /** Whether this object has recorded `digest` already. */
  has(digest: string): boolean {
    return this.recorded.has(digest);
  }

  /** Records that this process uses `digest`. */
  async add(digest: string): Promise<void> {
    if (this.recorded.has(digest)) return;
    if (this.file === undefined) {
      await mkdir(this.dir, { recursive: true });
      const name = `${process.pid}-${randomBytes(6).toString("hex")}`;
      const file = join(this.dir, name);
      // Written under a hidden name, then renamed: a record is never seen without its owner's token.
      const tmp = join(this.dir, `.${name}`);
      await writeFile(tmp, `${formatProcessToken(processToken())}\n`, { flag: "wx" });
      await rename(tmp, file);
      ownRecords.add(file);
      removeOwnRecordsAtExit();
      this.file = file;
    }
    await appendFile(this.file, `${digest}\n`);
    this.recorded.add(digest);
  }

  /** Forgets every use of this object (a long-lived process that is done with what it built). */
  async clear(): Promise<void> {
    if (this.file === undefined) return;
    ownRecords.delete(this.file);
    await rm(this.file, { force: true });
    this.file = undefined;
    this.recorded.clear();
  }

  /**
   * Every digest a running process has recorded. Records of processes that
   * are gone are removed here.
   */
  async inUse(): Promise<Set<string>> {
    const used = new Set<string>();
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      if (name.startsWith(".")) continue;
      const file = join(this.dir, name);
      const text = await readFile(file, "utf8").catch(() => undefined);
      if (text === undefined) continue;
      const lines = text.split("\n");
      const owner = parseProcessToken(lines[0] ?? "");
      // A record appears under its name with its token already in it, so a
      // first line that is not a token means a damaged record.
      if (!owner || !processAlive(owner)) {
        await rm(file, { force: true });
        continue;
      }
      for (const line of lines.slice(1)) if (line !== "") used.add(line);
    }
    return used;
  }
}
