import { statfs } from "node:fs/promises";
import { dirname } from "node:path";
import { A3sError } from "../errors.js";
import { ToolFailure } from "../util/host-tool.js";

/** What an output's error is explained against. */
export interface OutputErrorContext {
  readonly format: string;
  /** The output's path as the user gave it, made absolute. */
  readonly path: string;
  /** The build's scratch directory, where staging copies live (a full TMPDIR is not a full target). */
  readonly scratchDir?: string | undefined;
}

/**
 * An output's failure in the user's terms: the real cause (no space, a
 * read-only filesystem, no permission, a name too long, a directory gone)
 * and where (the output, or the temporary directory a staging copy was
 * written to), instead of an errno string about a path the user never named.
 * Errors already explained (A3sErrors that carry no errno) pass unchanged.
 */
export async function explainOutputError(e: unknown, o: OutputErrorContext): Promise<unknown> {
  const errno = errnoOf(e);
  if (!errno) return e;
  const { code } = errno;
  const inScratch = o.scratchDir !== undefined && errno.paths.some((p) => p.startsWith(o.scratchDir + "/"));
  const where = errno.paths.find((p) => !p.startsWith((o.scratchDir ?? "\0") + "/")) ?? errno.paths[0];
  const out = (why: string, hint: string): A3sError =>
    new A3sError(code, `cannot write the ${o.format} output ${o.path}: ${why}`, { subject: o.path, hint, cause: e });
  switch (code) {
    case "ENOSPC":
    case "EDQUOT": {
      const full = inScratch ? (o.scratchDir as string) : dirname(o.path);
      // Its size, not what is free: the temporary is removed by now, so the free space says nothing.
      const size = await statfs(full).then((fs) => ` (${((fs.blocks * fs.bsize) / 1024 / 1024).toFixed(1)} MiB in all)`, () => "");
      return inScratch
        ? out(`no space left in the temporary directory ${full} while staging it${size}`, "free space there, or point TMPDIR at a larger filesystem")
        : out(`no space left on the filesystem holding ${full}${size}`, "free some space there, or write the output to another filesystem");
    }
    case "EROFS":
      return out(`${inScratch ? `the temporary directory ${o.scratchDir}` : dirname(o.path)} is on a read-only filesystem`, "write to a writable filesystem");
    case "EACCES":
    case "EPERM":
      return out(`permission denied${where ? ` on ${where}` : ""}`, "choose a place you can write to, or run as a user who may");
    case "ENAMETOOLONG":
      return out(`a name is too long for the filesystem${where ? `: ${where}` : ""}`, "use a shorter output path");
    case "ENOENT":
      return out(`${where ? `${dirname(where)} ` : "its directory "}no longer exists (was it removed during the build?)`, "keep the directory while the build runs");
    default:
      return e;
  }
}

/**
 * The errno behind an error: the error itself, or its cause, or a tool's
 * words for one. An A3sError that already names its cause (any code but the
 * raw EWRITE and ETOOL) ends the search: it is explained.
 */
function errnoOf(e: unknown): { code: string; paths: string[] } | undefined {
  for (let cur: unknown = e, depth = 0; cur instanceof Error && depth < 4; cur = cur.cause, depth++) {
    if (cur instanceof A3sError && !(cur instanceof ToolFailure) && cur.code !== "EWRITE" && cur.code !== "ETOOL") return undefined;
    if (cur instanceof ToolFailure) {
      const code = errnoFromWords(cur.stderr);
      return code ? { code, paths: [] } : undefined;
    }
    // copyfile(2)-like errors carry the source as `path` and the target as `dest`.
    const errno = cur as NodeJS.ErrnoException & { dest?: string };
    if (typeof errno.code === "string" && typeof errno.syscall === "string") {
      return { code: errno.code, paths: [errno.dest, errno.path].filter((p): p is string => typeof p === "string") };
    }
  }
  return undefined;
}

/** The errno a tool reported in strerror's words, for the few causes a user can act on. */
function errnoFromWords(stderr: string): string | undefined {
  if (/No space left on device/i.test(stderr)) return "ENOSPC";
  if (/Disk quota exceeded/i.test(stderr)) return "EDQUOT";
  if (/Read-only file system/i.test(stderr)) return "EROFS";
  if (/File name too long/i.test(stderr)) return "ENAMETOOLONG";
  if (/Permission denied/i.test(stderr)) return "EACCES";
  return undefined;
}
