import { constants, type Stats } from "node:fs";
import { access, lstat, readdir, realpath, statfs } from "node:fs/promises";
import { basename, dirname, join, resolve, sep } from "node:path";
import { A3sError } from "../errors.js";
import { compressionForPath } from "../formats/compression/compress.js";
import { sidecarMarks, sidecarPathFor } from "../formats/dir/sidecar.js";
import { runningAsRoot } from "../util/running-as-root.js";
import { layoutMarks } from "./oci-layout-marks.js";
import type { OutputFormat, OutputSpec } from "./output.js";
import { protectedPathReason } from "./protected-paths.js";

/**
 * Where an output will be published, checked before any work starts, so a
 * build that cannot publish (or must not) stops before it has read a source
 * or written a byte.
 *
 * The rule this file enforces: an output never destroys what a3s-rootfs did
 * not write. Replacing PATH is fine when PATH is missing, a regular file or
 * symlink replaced by a file output, an empty directory, or a directory
 * a3s-rootfs published there (its metadata sidecar records its identity:
 * formats/dir/sidecar.ts), or, for an `oci` output, a directory holding
 * exactly one OCI image layout a3s-rootfs wrote (oci-layout-output.ts).
 * Pushed outputs (`docker://REF`) write nothing here and are not checked.
 * Anything else (a project directory, a directory
 * where a file output goes, a file where a directory goes, a device or a
 * fifo) is refused unless `force`. The root, system directories, the current
 * directory, home and their ancestors are refused always (protected-paths.ts).
 */
export interface OutputTarget {
  readonly format: OutputFormat;
  /** The path as the user gave it. */
  readonly given: string;
  /** Absolute: what messages name and what is written. */
  readonly path: string;
  /** Absolute, with the parent's symlinks resolved: the name a rename replaces, and what is compared. */
  readonly real: string;
}

export interface TargetCheckOptions {
  /** Replace what a3s-rootfs did not write (never a protected path). */
  readonly force?: boolean;
}

/** Linux's NAME_MAX on every filesystem a rootfs is written to. */
const NAME_MAX = 255;
/** The suffix of the dir output's sidecar (formats/dir/sidecar.ts), which its name must leave room for. */
const SIDECAR_SUFFIX_BYTES = Buffer.byteLength(sidecarPathFor(""));

/** Extensions of compressions a3s-rootfs does not write: naming one would silently give an uncompressed file. */
const UNWRITTEN_COMPRESSIONS = /\.(bz2|tbz2?|xz|txz|lz4|lzma|tlz|lz|lzo|z|br|sz)$/i;
const FILE_FORMATS = new Set<OutputFormat>(["tar", "cpio", "ext4", "erofs", "squashfs"]);
const ARCHIVE_FORMATS = new Set<OutputFormat>(["tar", "cpio"]);
/** Outputs that publish a directory. */
const DIRECTORY_FORMATS = new Set<OutputFormat>(["dir", "oci"]);

/**
 * Checks every output's path: its name, its extension, that it is not
 * protected and not written by another output, that its directory exists,
 * is writable and has space, and that what is there now may be replaced.
 * Usage errors (EUSAGE) come first, for all outputs, then the checks that
 * look at the disk. The targets are the local outputs', in their order.
 */
export async function checkOutputTargets(all: readonly OutputSpec[], opts: TargetCheckOptions = {}): Promise<OutputTarget[]> {
  // A push sends its output to a registry: there is no local path to check.
  const specs = all.filter((s) => s.push === undefined);
  for (const spec of specs) checkName(spec);
  const targets: OutputTarget[] = [];
  for (const spec of specs) {
    const path = resolve(spec.path);
    const real = path === "/" ? "/" : join(await realPrefix(dirname(path)), basename(path));
    const reason = await protectedPathReason(real);
    if (reason) {
      throw new A3sError("EUSAGE", `refusing to write the ${spec.format} output ${spec.path}: ${reason}`, {
        subject: spec.path,
        hint: "write the output to a new path; --force never replaces this one",
      });
    }
    targets.push({ format: spec.format, given: spec.path, path, real });
  }
  checkNoOverlap(targets);
  for (const t of targets) {
    await realParent(t.path);
    await checkDirectoryWritable(t);
    await checkReplaceable(t, opts);
  }
  return targets;
}

/** The name and extension of one output: a usage error when they cannot work. */
function checkName(spec: OutputSpec): void {
  const name = basename(resolve(spec.path));
  const limit = spec.format === "dir" ? NAME_MAX - SIDECAR_SUFFIX_BYTES : NAME_MAX;
  if (Buffer.byteLength(name) > limit) {
    throw new A3sError(
      "EUSAGE",
      `the ${spec.format} output's name is too long: ${Buffer.byteLength(name)} bytes, at most ${limit}` +
        (spec.format === "dir" ? ` (its metadata sidecar NAME${sidecarPathFor("")} sits beside it, within the filesystem's 255)` : ""),
      { subject: spec.path, hint: "choose a shorter name" },
    );
  }
  if (!FILE_FORMATS.has(spec.format)) return;
  const lower = name.toLowerCase();
  if (UNWRITTEN_COMPRESSIONS.test(lower)) {
    throw new A3sError(
      "EUSAGE",
      `${spec.path}: a3s-rootfs does not write ${lower.slice(lower.lastIndexOf("."))} compression` +
        (ARCHIVE_FORMATS.has(spec.format) ? `; a ${spec.format} output is compressed by a .gz or .zst name, or not at all` : ""),
      { subject: spec.path, hint: ARCHIVE_FORMATS.has(spec.format) ? `name it .${spec.format}.gz or .${spec.format}.zst, or compress it afterwards` : "compress it afterwards" },
    );
  }
  if (!ARCHIVE_FORMATS.has(spec.format) && compressionForPath(lower) !== "none") {
    throw new A3sError("EUSAGE", `${spec.path}: a3s-rootfs writes ${spec.format} images uncompressed, but the name says ${compressionForPath(lower)}`, {
      subject: spec.path,
      hint: `drop the compression extension, or compress the image afterwards`,
    });
  }
}

/**
 * `dir` with the symlinks of its existing part resolved, the missing rest
 * appended as given: what two outputs are compared on before it is known
 * whether their directories exist.
 */
async function realPrefix(dir: string): Promise<string> {
  const found = await realpath(dir).catch(() => undefined);
  if (found !== undefined) return found;
  const up = dirname(dir);
  return up === dir ? dir : join(await realPrefix(up), basename(dir));
}

/** The parent of `path` with its symlinks resolved; a missing parent is an error naming the user's path. */
async function realParent(path: string): Promise<string> {
  const dir = dirname(path);
  try {
    return await realpath(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      throw new A3sError("ENOENT", `cannot write ${path}: the directory ${dir} does not exist`, {
        subject: path,
        hint: `create it first (mkdir -p ${dir})`,
      });
    }
    if (code === "ENOTDIR") throw new A3sError("ENOTDIR", `cannot write ${path}: ${dir} is not a directory`, { subject: path });
    throw new A3sError(code ?? "EIO", `cannot write ${path}: ${(e as Error).message}`, { subject: path, cause: e });
  }
}

/** Two outputs to one path, or one inside a dir output (or on its sidecar), would overwrite each other. */
function checkNoOverlap(targets: readonly OutputTarget[]): void {
  for (const [i, a] of targets.entries()) {
    for (const b of targets.slice(i + 1)) {
      if (a.real === b.real) {
        throw new A3sError("EUSAGE", `two outputs write ${b.given} (${a.format} and ${b.format}); the second would replace the first`, {
          subject: b.given,
          hint: "give each output its own path",
        });
      }
      for (const [outer, inner] of [[a, b], [b, a]] as const) {
        if (!DIRECTORY_FORMATS.has(outer.format)) continue;
        if (inner.real.startsWith(outer.real + sep) || (outer.format === "dir" && inner.real === sidecarPathFor(outer.real))) {
          throw new A3sError("EUSAGE", `the ${inner.format} output ${inner.given} is inside the ${outer.format} output ${outer.given}${outer.format === "dir" ? " or on its sidecar" : ""}`, {
            subject: inner.given,
            hint: "write each output outside the others",
          });
        }
      }
    }
  }
}

/** The output's directory must take a new file now: writable, on a writable filesystem, not full. */
async function checkDirectoryWritable(t: OutputTarget): Promise<void> {
  const dir = dirname(t.real);
  const denied = await access(dir, constants.W_OK).then(
    () => undefined,
    (e: NodeJS.ErrnoException) => e,
  );
  if (denied?.code === "EROFS") {
    throw new A3sError("EROFS", `cannot write ${t.path}: ${dirname(t.path)} is on a read-only filesystem`, {
      subject: t.path,
      hint: "write the output to a writable filesystem",
    });
  }
  if (denied) {
    throw new A3sError("EACCES", `cannot write ${t.path}: no permission to create files in ${dirname(t.path)}`, {
      subject: t.path,
      hint: "choose a directory you can write to",
    });
  }
  const fs = await statfs(dir).catch(() => undefined);
  // Root may still use the blocks reserved for it; anyone else only the available ones.
  if (fs && (runningAsRoot() ? fs.bfree : fs.bavail) === 0) {
    throw new A3sError("ENOSPC", `cannot write ${t.path}: no space left on the filesystem holding ${dirname(t.path)}`, {
      subject: t.path,
      hint: "free some space there, or write the output to another filesystem",
    });
  }
}

/**
 * Whether what is at the target now may be replaced (see the file comment).
 * Run before any work, and again just before publishing, so a directory
 * that appeared or filled up meanwhile is not lost either.
 */
export async function checkReplaceable(t: OutputTarget, opts: TargetCheckOptions = {}): Promise<void> {
  const st = await lstat(t.real).catch(() => undefined);
  if (t.format === "dir") await checkSidecarPath(t);
  if (!st || opts.force) return;
  const refuse = (what: string): never => {
    throw new A3sError("EEXIST", `refusing to replace ${t.given}: ${what}`, {
      subject: t.given,
      hint: "choose another path, or pass --force to replace it",
    });
  };
  if (DIRECTORY_FORMATS.has(t.format)) {
    if (!st.isDirectory()) refuse(`it is ${kindOf(st)}, and a ${t.format} output would replace it with a directory`);
    const names = await readdir(t.real);
    if (names.length === 0) return;
    if (t.format === "dir" ? await sidecarMarks(t.real) : await layoutMarks(t.real)) return;
    refuse(
      `it is a directory a3s-rootfs did not write (it holds ${names.length === 1 ? "1 entry" : `${names.length} entries`}, such as ${JSON.stringify(names.sort()[0])}), ` +
        `and publishing the ${t.format === "oci" ? "image layout" : "rootfs"} would delete them`,
    );
  }
  if (st.isDirectory()) refuse(`it is a directory, and a ${t.format} output would replace it with a file`);
  if (!st.isFile() && !st.isSymbolicLink()) refuse(`it is ${kindOf(st)}, not a file a3s-rootfs would replace`);
}

/** The dir output's sidecar path must be free for a file: a directory or device there is not ours to replace. */
async function checkSidecarPath(t: OutputTarget): Promise<void> {
  const sidecar = sidecarPathFor(t.real);
  const st = await lstat(sidecar).catch(() => undefined);
  if (st && !st.isFile()) {
    throw new A3sError("EEXIST", `refusing to write ${sidecarPathFor(t.given)}, the dir output's metadata sidecar: it is ${kindOf(st)}`, {
      subject: sidecarPathFor(t.given),
      hint: "move it away, or choose another path for the dir output",
    });
  }
}

function kindOf(st: Stats): string {
  if (st.isDirectory()) return "a directory";
  if (st.isFile()) return "a regular file";
  if (st.isSymbolicLink()) return "a symbolic link";
  if (st.isFIFO()) return "a fifo";
  if (st.isSocket()) return "a socket";
  return "a device node";
}
