import { randomBytes } from "node:crypto";
import { lstat, rename } from "node:fs/promises";
import { dirname, join } from "node:path";
import { A3sError } from "../errors.js";
import { pausePoint } from "../util/test-pause.js";
import type { OutputCompanion } from "./output.js";
import { removeTree } from "../util/remove-tree.js";

/**
 * A fresh temporary name beside `finalPath`: in the same directory, so
 * rename(2) is atomic, and short (".a3s-" and 8 hex digits), so a final name
 * of any legal length (up to NAME_MAX) still has one. Hidden, and named so
 * it is clearly a3s-rootfs's.
 */
export function temporaryPathFor(finalPath: string): string {
  return join(dirname(finalPath), `.a3s-${randomBytes(4).toString("hex")}`);
}

export interface AtomicWriteOptions {
  /** Cancels the write up to the moment of publishing; then the output is published whole. */
  readonly signal?: AbortSignal | undefined;
  /** The last check before the rename, once the output is complete: may the target still be replaced? */
  readonly beforePublish?: () => Promise<void>;
}

/**
 * Runs `produce` against a temporary path and publishes the result at
 * `finalPath` only if it succeeds. On failure or cancellation the temporary
 * (and any companion) is removed and whatever was at `finalPath` is
 * untouched. Nothing here listens to process signals: the caller's
 * AbortSignal stops `produce`, which settles every write it started before
 * rejecting, and the finally block below then removes the temporary.
 *
 * Publishing is one rename(2) when a file replaces a file or nothing. A
 * directory cannot be renamed over a non-empty one, and a file cannot
 * replace a directory (or a directory a file) in one rename, so then the
 * old entry is first renamed aside (and put back if the second rename
 * fails), and removed once the new one is in place. Those two renames are
 * not cancellable: a signal arriving between them would otherwise leave
 * neither the old output nor the new one.
 */
export async function writeAtomically(
  finalPath: string,
  produce: (tmpPath: string) => Promise<readonly OutputCompanion[] | void>,
  opts: AtomicWriteOptions = {},
): Promise<void> {
  const tmp = temporaryPathFor(finalPath);
  let companions: readonly OutputCompanion[] = [];
  try {
    companions = (await produce(tmp)) ?? [];
    await pausePoint("publish", opts.signal);
    opts.signal?.throwIfAborted();
    await opts.beforePublish?.();
    await publish(tmp, finalPath);
    for (const c of companions) await rename(c.tmp, c.final);
  } catch (e) {
    throw withUserPaths(e, [{ tmp, final: finalPath }, ...companions]);
  } finally {
    await removeTree(tmp);
    for (const c of companions) await removeTree(c.tmp);
  }
}

async function publish(tmp: string, finalPath: string): Promise<void> {
  const tmpIsDir = (await lstat(tmp)).isDirectory();
  const old = await lstat(finalPath).catch(() => undefined);
  if (!old || (!tmpIsDir && !old.isDirectory())) {
    await rename(tmp, finalPath);
    return;
  }
  const aside = temporaryPathFor(finalPath);
  await rename(finalPath, aside);
  try {
    await rename(tmp, finalPath);
  } catch (e) {
    await rename(aside, finalPath);
    throw e;
  }
  await removeTree(aside);
}

/**
 * The error with every temporary name replaced by the name the user gave:
 * the temporary is an implementation detail, and "cannot write
 * /x/.a3s-1f2e3d4c/etc/passwd" would send them looking for a file that never
 * exists. The error's code (an A3sError's, or an errno's) is kept.
 */
export function withUserPaths(e: unknown, names: readonly OutputCompanion[]): unknown {
  if (!(e instanceof Error) || names.length === 0) return e;
  const rewrite = (s: string): string => names.reduce((text, n) => text.split(n.tmp).join(n.final), s);
  const message = rewrite(e.message);
  const errno = e as NodeJS.ErrnoException & { dest?: string };
  const path = typeof errno.path === "string" ? rewrite(errno.path) : undefined;
  const dest = typeof errno.dest === "string" ? rewrite(errno.dest) : undefined;
  if (message === e.message && path === errno.path && dest === errno.dest) return e;
  if (e instanceof A3sError) {
    return new A3sError(e.code, message, { ...(e.subject ? { subject: rewrite(e.subject) } : {}), ...(e.hint ? { hint: e.hint } : {}), cause: e });
  }
  const out: NodeJS.ErrnoException & { dest?: string } = new Error(message, { cause: e });
  if (errno.code !== undefined) out.code = errno.code;
  if (errno.errno !== undefined) out.errno = errno.errno;
  if (errno.syscall !== undefined) out.syscall = errno.syscall;
  if (path !== undefined) out.path = path;
  if (dest !== undefined) out.dest = dest;
  return out;
}
