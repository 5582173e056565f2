#!/usr/bin/env node
// The installed `a3s-rootfs` command (package.json "bin"). It runs the CLI
// bundled into one CommonJS script (main.bundle.cjs, made by
// scripts/bundle-cli.mjs) and compiles it with a V8 code cache: V8 then
// skips parsing and compiling what the previous run already compiled, which
// is most of a command's start (issue 14, CLI start).
//
// The code cache is a file under the user's cache directory:
//   <cache root>/cli-code-cache/<node version>-<arch>-<bundle SHA-256, 16 hex>.bin
// holding a header, the SHA-256 of the bundle it was made from, the SHA-256
// of the cache data, then the data. Every byte read from it is checked against
// those digests before V8 sees it; V8 checks its own version and flags on top
// (script.cachedDataRejected). A cache that is missing, damaged, for another
// bundle or rejected is written again after the run, to a temporary file that
// is then renamed over it. The cache never fails a command: an unreadable or
// unwritable cache directory only means a plain compile.
//
// This file is CommonJS and loads nothing of the library, so that starting
// it costs no ES module resolution.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { join } from "node:path";
import { Script } from "node:vm";

const BUNDLE = join(__dirname, "main.bundle.cjs");
/** The code cache file's format; a file with another header is rewritten. */
const MAGIC = Buffer.from("a3s-rootfs code cache 1\n");
const DIGEST = 32;

/** The user's cache directory: the same rule as cacheRoot() in src/util/cache-dir.ts, which this CommonJS file cannot import. */
function cacheRoot(env: NodeJS.ProcessEnv): string {
  if (env.A3S_CACHE_DIR) return env.A3S_CACHE_DIR;
  if (env.XDG_CACHE_HOME) return join(env.XDG_CACHE_HOME, "a3s-rootfs");
  return join(homedir(), ".cache", "a3s-rootfs");
}

function sha256(b: Buffer): Buffer {
  return createHash("sha256").update(b).digest();
}

/** The cached data for this bundle, or undefined when there is none or it does not verify. */
function readCodeCache(file: string, bundleDigest: Buffer): Buffer | undefined {
  let raw: Buffer;
  try {
    raw = readFileSync(file);
  } catch {
    return undefined;
  }
  const head = MAGIC.length;
  if (raw.length <= head + 2 * DIGEST || !raw.subarray(0, head).equals(MAGIC)) return undefined;
  if (!raw.subarray(head, head + DIGEST).equals(bundleDigest)) return undefined;
  const data = raw.subarray(head + 2 * DIGEST);
  if (!sha256(data).equals(raw.subarray(head + DIGEST, head + 2 * DIGEST))) return undefined;
  return data;
}

/** Writes the code cache whole or not at all; any failure leaves the command alone. */
function writeCodeCache(file: string, dir: string, bundleDigest: Buffer, data: Buffer): void {
  const temp = `${file}.${process.pid}.tmp`;
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(temp, Buffer.concat([MAGIC, bundleDigest, sha256(data), data]), { mode: 0o644 });
    renameSync(temp, file);
  } catch {
    try {
      unlinkSync(temp);
    } catch {
      // Nothing was written.
    }
  }
}

const source = readFileSync(BUNDLE);
const bundleDigest = sha256(source);
const dir = join(cacheRoot(process.env), "cli-code-cache");
const file = join(dir, `${process.version}-${process.arch}-${bundleDigest.toString("hex").slice(0, 16)}.bin`);
const cachedData = readCodeCache(file, bundleDigest);

// The CommonJS wrapper node itself puts around a module, so the bundle sees
// the usual require, module, __filename and __dirname (its own, in dist/src/cli).
const wrapped = `(function (exports, require, module, __filename, __dirname) {${source.toString("utf8")}\n})`;
const script = new Script(wrapped, { filename: BUNDLE, cachedData });
if (cachedData === undefined || script.cachedDataRejected === true) {
  // Written when the run ends, so the cache holds the functions this command
  // compiled as well, not only the top level.
  process.once("exit", () => writeCodeCache(file, dir, bundleDigest, script.createCachedData()));
}
const bundleModule = { exports: {} };
(script.runInThisContext() as (...args: unknown[]) => void).call(
  bundleModule.exports,
  bundleModule.exports,
  createRequire(BUNDLE),
  bundleModule,
  BUNDLE,
  __dirname,
);
