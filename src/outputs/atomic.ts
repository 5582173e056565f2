import { randomBytes } from "node:crypto";
import { rename, rm, lstat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { removeTreeNow } from "../util/remove-tree-now.js";

/**
 * Temporary paths that exist right now. A signal handler removes them, so
 * an interrupted build (Ctrl-C, SIGTERM, a timeout) leaves nothing behind.
 * SIGKILL cannot be caught: then a hidden ".NAME.a3s-tmp-*" may remain beside
 * the target, but the target itself is never touched.
 */
const pending = new Set<string>();
let handlersInstalled = false;

function installSignalHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(sig, () => {
      for (const p of pending) removeTreeNow(p);
      // Re-raise so the exit status says which signal ended us.
      process.kill(process.pid, sig);
    });
  }
}

/** A fresh temporary path beside `finalPath`, on the same filesystem so rename(2) is atomic. */
export function temporaryPathFor(finalPath: string): string {
  return join(dirname(finalPath), `.${basename(finalPath)}.a3s-tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
}

/**
 * Runs `produce` against a temporary path and publishes the result at
 * `finalPath` only if it succeeds. On failure the temporary is removed and
 * whatever was at `finalPath` before is untouched.
 *
 * A file replaces a file in one rename(2). A directory cannot be renamed
 * over a non-empty one, so the old directory is first renamed aside (and put
 * back if the second rename fails), then removed.
 */
export async function writeAtomically<T>(finalPath: string, produce: (tmpPath: string) => Promise<T>): Promise<T> {
  installSignalHandlers();
  const tmp = temporaryPathFor(finalPath);
  pending.add(tmp);
  try {
    const result = await produce(tmp);
    await publish(tmp, finalPath);
    return result;
  } finally {
    pending.delete(tmp);
    await rm(tmp, { recursive: true, force: true });
  }
}

async function publish(tmp: string, finalPath: string): Promise<void> {
  const tmpIsDir = (await lstat(tmp)).isDirectory();
  const old = await lstat(finalPath).catch(() => undefined);
  if (!tmpIsDir || !old?.isDirectory()) {
    if (tmpIsDir && old) await rm(finalPath, { force: true });
    await rename(tmp, finalPath);
    return;
  }
  const aside = temporaryPathFor(finalPath);
  pending.add(aside);
  try {
    await rename(finalPath, aside);
    try {
      await rename(tmp, finalPath);
    } catch (e) {
      await rename(aside, finalPath);
      throw e;
    }
  } finally {
    pending.delete(aside);
    await rm(aside, { recursive: true, force: true });
  }
}
