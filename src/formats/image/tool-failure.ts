import { constants } from "node:fs";
import { access, stat, statfs } from "node:fs/promises";
import { dirname } from "node:path";
import { A3sError } from "../../errors.js";
import { ToolFailure } from "../../util/host-tool.js";

/**
 * A mkfs tool's failure in the user's terms: the real cause (the image's
 * directory is missing or read-only, no permission, no space left), found by
 * looking at the disk rather than trusting the tool's words, and never the
 * tool's usage text, which some tools (mkfs.erofs) print after any error.
 * Anything else keeps the tool's own complaint, without its usage text.
 */
export async function explainImageToolFailure(e: unknown, o: { format: string; path: string; imageBytes?: number }): Promise<unknown> {
  if (!(e instanceof ToolFailure)) return e;
  const where = await diskProblem(o.path, e.stderr, o.imageBytes);
  if (where) return new A3sError(where.code, `cannot write the ${o.format} image ${o.path}: ${where.why}`, { subject: o.path, hint: where.hint, cause: e });
  const words = toolComplaint(e.stderr);
  const status = e.status === null ? "was killed" : `exited with status ${e.status}`;
  return new A3sError("ETOOL", `${e.tool} ${status} writing the ${o.format} image ${o.path}${words ? `: ${words}` : ""}`, {
    subject: o.path,
    cause: e,
  });
}

interface DiskProblem {
  readonly code: string;
  readonly why: string;
  readonly hint: string;
}

/**
 * What is wrong with the place `path` is written to, if anything: its
 * directory missing, not a directory, read-only or not writable by us, or
 * its filesystem full (the tool said ENOSPC, or fewer bytes are free than
 * the image needs).
 */
export async function diskProblem(path: string, toolStderr = "", imageBytes?: number): Promise<DiskProblem | undefined> {
  const dir = dirname(path);
  const st = await stat(dir).catch((e: NodeJS.ErrnoException) => e);
  if (st instanceof Error) {
    if (st.code === "ENOENT") return { code: "ENOENT", why: `the directory ${dir} does not exist`, hint: `create it first (mkdir -p ${dir})` };
    return { code: st.code ?? "EIO", why: `cannot reach the directory ${dir} (${st.message})`, hint: "check the path" };
  }
  if (!st.isDirectory()) return { code: "ENOTDIR", why: `${dir} is not a directory`, hint: "choose a path inside a directory" };
  const denied = await access(dir, constants.W_OK).then(() => undefined, (e: NodeJS.ErrnoException) => e);
  if (denied?.code === "EROFS") return { code: "EROFS", why: `${dir} is on a read-only filesystem`, hint: "write the image to a writable filesystem" };
  if (denied) return { code: "EACCES", why: `no permission to create files in ${dir}`, hint: "choose a directory you can write to" };
  const fs = await statfs(dir).catch(() => undefined);
  const free = fs === undefined ? undefined : fs.bavail * fs.bsize;
  if (/No space left on device|Disk quota exceeded/i.test(toolStderr) || free === 0 || (imageBytes !== undefined && free !== undefined && free < imageBytes)) {
    return {
      code: "ENOSPC",
      why: `no space left on the filesystem holding ${dir}${free === undefined ? "" : ` (${mib(free)} free${imageBytes === undefined ? "" : `, the image needs ${mib(imageBytes)}`})`}`,
      hint: "free some space there, or write the image to another filesystem",
    };
  }
  return undefined;
}

/** The lines of a tool's stderr that say what went wrong: its usage text and blank lines left out, at most three. */
export function toolComplaint(stderr: string): string {
  const lines: string[] = [];
  for (const line of stderr.split("\n")) {
    if (/^\s*usage:/i.test(line)) break;
    if (line.trim() !== "") lines.push(line.trim());
  }
  return lines.slice(-3).join("; ");
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
