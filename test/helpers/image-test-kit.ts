import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { OutputWriter } from "../../src/outputs/output.js";
import type { RootfsTree } from "../../src/tree/index.js";
import { tempDir } from "./temp-dir.js";

export const isRoot = process.getuid?.() === 0;
/** The unprivileged user the non-root builds run as. */
export const NOBODY = 65534;

export function sha256File(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/** Writes `tree` with `writer` to a fresh path and returns it. */
export async function buildImage(writer: OutputWriter, tree: RootfsTree, name: string): Promise<string> {
  const out = join(tempDir("a3s-image-test-"), name);
  await writer.write(tree, { tmp: out, final: out }, { epoch: tree.epoch, warn: () => undefined });
  return out;
}

/**
 * Writes `tree` with TMPDIR pointed at a fresh directory and returns what the
 * writer left there afterwards (nothing, if every scratch file was cleaned up).
 */
export async function scratchLeftBy(
  writer: OutputWriter,
  tree: RootfsTree,
): Promise<{ left: string[]; error: unknown }> {
  const out = join(tempDir("a3s-image-test-"), "image");
  const dir = tempDir("a3s-tmpdir-");
  const saved = process.env.TMPDIR;
  process.env.TMPDIR = dir;
  let error: unknown;
  try {
    await writer.write(tree, { tmp: out, final: out }, { epoch: tree.epoch, warn: () => undefined });
  } catch (e) {
    error = e;
  } finally {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
  }
  return { left: readdirSync(dir), error };
}

export interface UnprivilegedBuild {
  ok: boolean;
  code?: string;
  message?: string;
  image: string;
  /** What the build left in its TMPDIR besides the image. */
  left: string[];
}

/**
 * Builds a sample tree (see build-image-cli.ts) as uid/gid 65534 with no
 * supplementary groups, in a directory that user owns.
 */
export function buildAsNobody(format: string, sample: string): UnprivilegedBuild {
  const dir = tempDir("a3s-nobody-");
  chmodSync(dir, 0o755);
  const work = join(dir, "work");
  // HOME is apart from TMPDIR: the build may keep its cache under HOME
  // (tool capabilities), and `left` is about TMPDIR only.
  const home = join(dir, "home");
  for (const d of [work, home]) {
    mkdirSync(d);
    chownSync(d, NOBODY, NOBODY);
  }
  const image = join(work, `image.${format}`);
  const cli = fileURLToPath(new URL("./build-image-cli.js", import.meta.url));
  const r = spawnSync(
    "setpriv",
    [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", process.execPath, cli, format, sample, image],
    { encoding: "utf8", env: { ...withoutCacheDir(process.env), TMPDIR: work, HOME: home } },
  );
  if (r.status !== 0) throw new Error(`unprivileged build failed to run: ${r.stderr}`);
  const result = JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}") as Omit<UnprivilegedBuild, "image" | "left">;
  return { ...result, image, left: readdirSync(work).filter((n) => n !== basename(image)) };
}


/**
 * The environment less the cache settings, so a build as another user keeps
 * its cache under the HOME it is given, whatever this run's cache is.
 */
function withoutCacheDir(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { A3S_CACHE_DIR: _cache, XDG_CACHE_HOME: _xdg, ...rest } = env;
  return rest;
}
