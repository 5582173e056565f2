// The installed command's V8 code cache (src/cli/a3s-rootfs.cts): made on the
// first run, used as it is afterwards, verified before use, replaced when it
// is damaged, and never the reason a command fails.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { runCli } from "./helpers/cli.js";
import { compileTestBinary } from "./helpers/static-binary.js";
import { tempDir } from "./helpers/temp-dir.js";

const BUNDLE = fileURLToPath(new URL("../src/cli/main.bundle.cjs", import.meta.url));
const MAGIC = Buffer.from("a3s-rootfs code cache 1\n");
const sha256 = (b: Buffer): Buffer => createHash("sha256").update(b).digest();

/** The one code cache file under a cache root. */
function cacheFile(cacheRoot: string): string {
  const dir = join(cacheRoot, "cli-code-cache");
  const files = readdirSync(dir);
  assert.equal(files.length, 1, `one code cache file expected in ${dir}, found: ${files.join(", ")}`);
  return join(dir, files[0] as string);
}

/** Asserts the file is a whole code cache for the current bundle: header, the bundle's digest, the data's digest. */
function assertVerifies(file: string): void {
  const raw = readFileSync(file);
  assert.ok(raw.subarray(0, MAGIC.length).equals(MAGIC), `${file} has no code cache header`);
  assert.ok(raw.subarray(MAGIC.length, MAGIC.length + 32).equals(sha256(readFileSync(BUNDLE))), `${file} is not for the current bundle`);
  const data = raw.subarray(MAGIC.length + 64);
  assert.ok(data.length > 0);
  assert.ok(raw.subarray(MAGIC.length + 32, MAGIC.length + 64).equals(sha256(data)), `${file}'s data does not match its digest`);
}

function build(cacheRoot: string, dir: string): void {
  const r = runCli(["build", "scratch", "--agent", compileTestBinary(), "-o", `cpio:${join(dir, "out.cpio.gz")}`, "--force", "--no-cache"], {
    cwd: dir,
    env: { A3S_CACHE_DIR: cacheRoot },
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /built scratch rootfs/);
  assert.ok(statSync(join(dir, "out.cpio.gz")).size > 0);
}

describe("the CLI's code cache", () => {
  it("is written on the first run under the cache root, and a second run uses it as it is", () => {
    const dir = tempDir();
    const root = join(dir, "cache");
    build(root, dir);
    const file = cacheFile(root);
    assertVerifies(file);
    const first = statSync(file);
    build(root, dir);
    // Rewriting renames a new file over it: the same inode means it verified and V8 took it.
    assert.equal(statSync(cacheFile(root)).ino, first.ino, "the code cache was written again although it was valid");
  });

  for (const [damage, spoil] of [
    ["a flipped byte in its data", (b: Buffer): Buffer => {
      const c = Buffer.from(b);
      c[c.length - 100] = (c[c.length - 100] as number) ^ 0xff;
      return c;
    }],
    ["a truncated file", (b: Buffer): Buffer => b.subarray(0, b.length >> 1)],
    ["another bundle's digest", (b: Buffer): Buffer => {
      const c = Buffer.from(b);
      c[MAGIC.length] = (c[MAGIC.length] as number) ^ 0xff;
      return c;
    }],
  ] as const) {
    it(`with ${damage} is detected and replaced, and the command still works`, () => {
      const dir = tempDir();
      const root = join(dir, "cache");
      build(root, dir);
      const file = cacheFile(root);
      writeFileSync(file, spoil(readFileSync(file)));
      const spoiled = statSync(file).ino;
      build(root, dir);
      assert.notEqual(statSync(cacheFile(root)).ino, spoiled, "the damaged code cache was not replaced");
      assertVerifies(cacheFile(root));
    });
  }

  it("in a cache directory that cannot be created does not stop a command", () => {
    const dir = tempDir();
    const blocker = join(dir, "a-file");
    writeFileSync(blocker, "not a directory\n");
    // Below a regular file nothing can be created, even by root.
    build(join(blocker, "cache"), dir);
    assert.equal(readFileSync(blocker, "utf8"), "not a directory\n");
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith(".tmp")), []);
  });

  it("cache gc removes the code caches of other node versions and builds, and keeps the one in use", () => {
    const dir = tempDir();
    const root = join(dir, "cache");
    build(root, dir);
    const current = cacheFile(root);
    const stale = join(root, "cli-code-cache", "v18.0.0-x64-0123456789abcdef.bin");
    writeFileSync(stale, "an older build's code cache\n");
    const r = runCli(["cache", "gc", "--json"], { cwd: dir, env: { A3S_CACHE_DIR: root } });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).codeCaches, { removed: 1, bytes: 28 });
    assert.equal(cacheFile(root), current);
    assertVerifies(current);
  });

  it("a user's error from the bundled command reads as before: the message, no stack", () => {
    const dir = tempDir();
    const r = runCli(["build", "scratch", "--agent", join(dir, "nowhere"), "-o", `cpio:${join(dir, "out.cpio.gz")}`], { cwd: dir, env: { A3S_CACHE_DIR: join(dir, "cache") } });
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `a3s-rootfs: error: the agent binary ${join(dir, "nowhere")} cannot be used: does not exist\n`);
  });
});
