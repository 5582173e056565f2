import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostCommand, runToolCommand, type ToolCommand } from "../../util/host-tool.js";
import { removeTree } from "../../util/remove-tree.js";
import { rememberedCapabilities } from "./tool-capability-memo.js";

/**
 * What the three image writers share: which host tools are there and what
 * they can do. Capabilities are read from each tool's own version and help
 * text, never guessed from the distribution: Debian 12 with backports has a
 * new e2fsprogs but an old erofs-utils, and CI may run anything newer.
 */

/** Options every image writer accepts. */
export interface ImageWriterOptions {
  /**
   * Whether this process may chown, mknod and set security.* xattrs, so a
   * staging directory can hold the tree exactly. Defaults to "running as root".
   */
  readonly privileged?: boolean;
  /**
   * Directories searched for the tools instead of $PATH and the sbin
   * directories. Tests point it at an empty directory to see the
   * missing-tool error.
   */
  readonly toolDirs?: readonly string[];
  /**
   * Programs to run instead of the host's: a newer mkfs.erofs or mksquashfs
   * provisioned into the cache (provision/image-tools.ts), which reads the
   * tree's tar stream where the host's needs a staging copy.
   */
  readonly tools?: { readonly "mkfs.erofs"?: ToolCommand | undefined; readonly mksquashfs?: ToolCommand | undefined } | undefined;
  /** Where staging copies go: the build's scratch directory (default: os.tmpdir()). */
  readonly scratchDir?: string;
  /** Cancels the write: the tool is killed and awaited, the staging copy removed. */
  readonly signal?: AbortSignal | undefined;
}

/** A dotted version compared numerically ("1.47.2" > "1.47.10" is false). */
export function versionAtLeast(version: string, minimum: string): boolean {
  const a = version.split(".").map((n) => parseInt(n, 10) || 0);
  const b = minimum.split(".").map((n) => parseInt(n, 10) || 0);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    if (x !== y) return x > y;
  }
  return true;
}

/**
 * The environment a mkfs tool runs with: the caller's, minus the variables
 * that silently change what the tools write. SOURCE_DATE_EPOCH in particular
 * makes mksquashfs overwrite every file's mtime and makes mkfs.erofs clamp
 * them, so a writer sets it only on purpose.
 */
export function toolEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LC_ALL: "C" };
  delete env.SOURCE_DATE_EPOCH;
  delete env.E2FSPROGS_FAKE_TIME;
  return { ...env, ...extra };
}

/** Output of a command that may exit non-zero just for printing its help. */
async function toolText(cmd: ToolCommand, args: readonly string[]): Promise<string> {
  try {
    const { stdout, stderr } = await runToolCommand(cmd, args, { env: toolEnv() });
    return stdout + stderr;
  } catch (e) {
    // Some tools print their usage and exit 1; the text is in the error.
    return e instanceof Error ? e.message : String(e);
  }
}

const cache = new Map<string, Promise<unknown>>();
/** A tool's capabilities: asked once per process, and remembered across processes (tool-capability-memo.ts). */
function cached<T>(kind: string, tool: string | ToolCommand, probe: () => Promise<T>, valid: (x: unknown) => x is T): Promise<T> {
  const key = `${kind}:${commandKey(tool)}`;
  let p = cache.get(key) as Promise<T> | undefined;
  if (!p) {
    p = rememberedCapabilities(kind, asCommand(tool), probe, valid);
    cache.set(key, p);
  }
  return p;
}

/** An object whose every named field is a string, a boolean or an array of strings, as `shape` says. */
function hasShape(x: unknown, shape: Record<string, "string" | "boolean" | "strings">): boolean {
  if (typeof x !== "object" || x === null) return false;
  const o = x as Record<string, unknown>;
  return Object.entries(shape).every(([k, t]) =>
    t === "strings" ? Array.isArray(o[k]) && (o[k] as unknown[]).every((s) => typeof s === "string") : typeof o[k] === t,
  );
}

/** A program path (the host's) or a ToolCommand (possibly a provisioned one). */
function asCommand(tool: string | ToolCommand): ToolCommand {
  return typeof tool === "string" ? hostCommand(tool) : tool;
}

function commandKey(tool: string | ToolCommand): string {
  const cmd = asCommand(tool);
  return [cmd.file, ...cmd.prefix].join("\0");
}

export interface MkfsErofsCapabilities {
  /** From `--version` (1.7 and later) or the usage line (1.5 prints "mkfs.erofs 1.5"); "0" when neither says. */
  readonly version: string;
  /** `--tar=f`: build straight from a tarball (erofs-utils 1.7). */
  readonly tarInput: boolean;
  readonly compressors: readonly string[];
}

export function mkfsErofsCapabilities(tool: string | ToolCommand): Promise<MkfsErofsCapabilities> {
  const valid = (x: unknown): x is MkfsErofsCapabilities => hasShape(x, { version: "string", tarInput: "boolean", compressors: "strings" });
  return cached("mkfs.erofs", tool, async () => {
    const mkfsErofs = asCommand(tool);
    const help = await toolText(mkfsErofs, ["--help"]);
    // 1.5-1.7: "Available compressors are: lz4hc, lz4"; 1.8: a list, one name a line, under
    // "supported compressors and their option ranges are:", options indented below each.
    const oneLine = /Available compressors are:\s*([^\n]*)/.exec(help)?.[1];
    const block = /supported compressors and their option ranges are:\n((?:\s{8,}\S[^\n]*\n)+)/.exec(help)?.[1] ?? "";
    const list =
      oneLine ??
      block
        .split("\n")
        .filter((l) => /^\s+[a-z0-9]+\s*$/.test(l))
        .join(",");
    const version = /mkfs\.erofs(?: \(erofs-utils\))? (\d+(?:\.\d+)+)/.exec(help + "\n" + (await toolText(mkfsErofs, ["--version"])))?.[1] ?? "0";
    return {
      version,
      tarInput: /--tar\b/.test(help),
      compressors: list
        .split(/[,\s]+/)
        .map((s) => s.trim())
        .filter(Boolean),
    };
  }, valid);
}

export interface MksquashfsCapabilities {
  readonly version: string;
  /**
   * Reads a tarball on stdin AND honours -root-mode/-uid/-gid/-time for the
   * root it makes up. 4.5.1 already has `-tar`, but there the root directory
   * gets the build's wall-clock time and the caller's uid, so the image is
   * neither exact nor reproducible: only 4.6 and later count.
   */
  readonly tarInput: boolean;
  readonly compressors: readonly string[];
}

export function mksquashfsCapabilities(tool: string | ToolCommand): Promise<MksquashfsCapabilities> {
  const valid = (x: unknown): x is MksquashfsCapabilities => hasShape(x, { version: "string", tarInput: "boolean", compressors: "strings" });
  return cached("mksquashfs", tool, async () => {
    const mksquashfs = asCommand(tool);
    const versionText = await toolText(mksquashfs, ["-version"]);
    const version = /version\s+(\d+(?:\.\d+)+)/.exec(versionText)?.[1] ?? "0";
    const help = await toolText(mksquashfs, ["-help"]);
    const block = /Compressors available:\n((?:\t{2,}\S[^\n]*\n)+)/.exec(help)?.[1] ?? "";
    return {
      version,
      tarInput: /^-tar\b/m.test(help) && versionAtLeast(version, "4.6"),
      compressors: block
        .split("\n")
        .map((l) => l.trim().split(/\s+/)[0] ?? "")
        .filter(Boolean),
    };
  }, valid);
}

/**
 * Runs `fn` with a fresh private directory in `parent` (the build's own
 * scratch directory; os.tmpdir() for a writer called on its own) and
 * removes it afterwards, whether `fn` succeeded, failed or was cancelled:
 * staging trees, tarballs and pseudo files never outlive the write. Nothing
 * here listens to process signals: a cancelled write rejects, `fn`'s tools
 * are killed and awaited, and this finally block runs like any other.
 */
export async function withScratchDir<T>(prefix: string, fn: (dir: string) => Promise<T>, parent: string = tmpdir()): Promise<T> {
  const dir = await mkdtemp(join(parent, prefix));
  try {
    return await fn(dir);
  } finally {
    await removeTree(dir);
  }
}
