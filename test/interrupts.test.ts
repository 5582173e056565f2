// Real builds of the real CLI, interrupted by real signals, for every output
// format: early (the build's scratch directory exists, nothing read yet),
// midway (the output, or its staging copy, is being written, or the mkfs
// tool is running) and while publishing (the output is complete under its
// temporary name, not yet renamed). Each must exit 128 + the signal's
// number, leave the previous output exactly as it was, leave nothing beside
// it and nothing in TMPDIR.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { constants } from "node:os";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { guestProgramPath } from "../src/index.js";
import { CLI } from "./helpers/cli.js";
import { tempDir } from "./helpers/temp-dir.js";

const FORMATS = ["dir", "tar", "cpio", "ext4", "erofs", "squashfs"] as const;
type Format = (typeof FORMATS)[number];
const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
type Phase = "early" | "midway" | "tool" | "publishing";

/** The name each format is published under. */
const TARGET: Record<Format, string> = {
  dir: "rootfs",
  tar: "rootfs.tar",
  cpio: "rootfs.cpio.gz",
  ext4: "rootfs.ext4",
  erofs: "rootfs.erofs",
  squashfs: "rootfs.sqfs",
};

interface Interrupted {
  status: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/**
 * Starts `a3s-rootfs build`, waits until `ready` says the build is where the
 * test wants it, sends `sig`, and waits for the process to end.
 */
async function interruptBuild(
  args: string[],
  opts: { cwd: string; tmp: string; pauseAt?: string; ready: (stderr: string) => boolean; sig: NodeJS.Signals },
): Promise<Interrupted> {
  const env = { ...process.env, TMPDIR: opts.tmp, ...(opts.pauseAt ? { A3S_TEST_PAUSE_AT: opts.pauseAt } : {}) };
  // --no-cache: what is interrupted is real work, never a copy from the build cache.
  const child = spawn(process.execPath, [CLI, "build", "--no-cache", ...args], { cwd: opts.cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  let stdout = "";
  child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
  const exited = new Promise<Interrupted>((resolve) =>
    child.on("exit", (status, signal) => resolve({ status, signal, stderr })),
  );
  let ended = false;
  void exited.then(() => (ended = true));
  while (!ended && !opts.ready(stderr)) await new Promise((r) => setTimeout(r, 2));
  assert.ok(!ended, `the build ended before it could be interrupted: ${stdout}${stderr}`);
  child.kill(opts.sig);
  return exited;
}

/** Everything in `dir`, recursively, as "relative/path size" lines: what "untouched" is compared on. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        out.push(`${r}/`);
        walk(p, r);
      } else out.push(`${r} ${e.isFile() ? readFileSync(p).toString("base64").slice(0, 64) + statSync(p).size : "special"}`);
    }
  };
  walk(dir, "");
  return out.sort();
}

/** Whether `root` holds a path matching `test` (searched a few levels down). */
function findUnder(root: string, test: (path: string) => boolean, depth = 6): string | undefined {
  if (!existsSync(root)) return undefined;
  for (const e of readdirSync(root, { withFileTypes: true })) {
    const p = join(root, e.name);
    if (test(p)) return p;
    if (e.isDirectory() && depth > 0) {
      const hit = findUnder(p, test, depth - 1);
      if (hit) return hit;
    }
  }
  return undefined;
}

describe("interrupted builds publish nothing, keep the previous output and leave no temporary", () => {
  const probe = guestProgramPath("probe");
  // A static agent of 512 MiB (the probe, extended with a hole): writing it
  // keeps every format busy long enough to be interrupted in the middle.
  const bigAgent = join(tempDir("a3s-big-agent-"), "agent");
  before(() => {
    copyFileSync(probe, bigAgent);
    truncateSync(bigAgent, 512 * 1024 * 1024);
  });

  const cases: { format: Format; phase: Phase }[] = [];
  for (const format of FORMATS) {
    cases.push({ format, phase: "early" }, { format, phase: "midway" });
    if (format === "erofs" || format === "squashfs") cases.push({ format, phase: "tool" });
    cases.push({ format, phase: "publishing" });
  }

  for (const [i, { format, phase }] of cases.entries()) {
    const sig = SIGNALS[i % SIGNALS.length] as NodeJS.Signals;
    it(`${format}, ${phase}: ${sig} exits ${128 + constants.signals[sig]}`, async () => {
      const work = tempDir("a3s-interrupt-");
      const cwd = join(work, "project");
      const tmp = join(work, "tmp");
      mkdirSync(cwd);
      mkdirSync(tmp);
      const target = join(cwd, TARGET[format]);
      if (format === "dir") {
        // The previous output is a dir a3s-rootfs wrote (so it may be replaced), with a file added since.
        const first = spawnSync(process.execPath, [CLI, "build", "--agent", probe, "-o", `dir:${TARGET.dir}`], { cwd, env: { ...process.env, TMPDIR: tmp }, encoding: "utf8" });
        assert.equal(first.status, 0, first.stderr);
        writeFileSync(join(target, "added-after-the-build"), "keep me\n");
      } else {
        writeFileSync(target, "the previous output\n");
      }
      const before = snapshot(cwd);

      const big = phase === "midway" || phase === "tool";
      const args = ["--agent", big ? bigAgent : probe, "-o", `${format}:${TARGET[format]}`];
      const temporaryBeside = (): string | undefined => readdirSync(cwd).find((n) => n.startsWith(".a3s-"));
      let ready: (stderr: string) => boolean;
      let pauseAt: string | undefined;
      if (phase === "early") {
        pauseAt = "source";
        ready = (s) => s.includes("paused at source");
      } else if (phase === "publishing") {
        pauseAt = "publish";
        ready = (s) => s.includes("paused at publish");
      } else if (phase === "tool") {
        // mkfs.erofs / mksquashfs has created the image under its temporary name.
        ready = () => temporaryBeside() !== undefined;
      } else if (format === "erofs" || format === "squashfs") {
        // The tool reads the tree's tar stream and has begun the image under its temporary name; where
        // it cannot read tar, the staging copy of the tree in the build's scratch directory has the agent in it.
        ready = () => temporaryBeside() !== undefined || findUnder(tmp, (p) => p.endsWith("/root/a3s/agent/a3s-box-code")) !== undefined;
      } else if (format === "dir") {
        ready = () => {
          const t = temporaryBeside();
          return t !== undefined && existsSync(join(cwd, t, "a3s/agent/a3s-box-code"));
        };
      } else {
        // tar: the archive has its first MiB; cpio.gz: its first 64 KiB (of about 520: zeros compress
        // well); ext4: the image is being written.
        const least = format === "tar" ? 1 << 20 : format === "cpio" ? 64 << 10 : 0;
        ready = () => {
          const t = temporaryBeside();
          return t !== undefined && (statSync(join(cwd, t), { throwIfNoEntry: false })?.size ?? 0) >= least;
        };
      }

      const r = await interruptBuild(args, { cwd, tmp, ...(pauseAt ? { pauseAt } : {}), ready, sig });
      assert.deepEqual({ status: r.status, signal: r.signal }, { status: 128 + constants.signals[sig], signal: null }, r.stderr);
      assert.match(r.stderr, new RegExp(`interrupted by ${sig}`));
      assert.doesNotMatch(r.stderr, /error:/);
      assert.deepEqual(snapshot(cwd), before, "the previous output is untouched and nothing is left beside it");
      assert.deepEqual(readdirSync(tmp), [], "the build's scratch directory is gone from TMPDIR");
    });
  }

  it("dir + ext4 + erofs + squashfs in one build, SIGINT while squashfs is written: the earlier outputs stay published, squashfs's path is untouched, no staging copy is left", async () => {
    const work = tempDir("a3s-interrupt-many-");
    const cwd = join(work, "project");
    const tmp = join(work, "tmp");
    mkdirSync(cwd);
    mkdirSync(tmp);
    writeFileSync(join(cwd, "rootfs.sqfs"), "the previous squashfs\n");
    const args = ["--agent", bigAgent, "-o", "dir:rootfs", "-o", "ext4:rootfs.ext4", "-o", "erofs:rootfs.erofs", "-o", "squashfs:rootfs.sqfs"];
    // squashfs is being written: its image under a temporary name beside rootfs.sqfs once erofs is
    // published (the tar stream), or its staging copy in TMPDIR (a tool that cannot read tar).
    const ready = (): boolean =>
      (existsSync(join(cwd, "rootfs.erofs")) && readdirSync(cwd).some((n) => n.startsWith(".a3s-"))) ||
      findUnder(tmp, (p) => /\/squashfs-[^/]+\/root\/a3s\/agent\/a3s-box-code$/.test(p)) !== undefined;
    const r = await interruptBuild(args, { cwd, tmp, ready, sig: "SIGINT" });
    assert.deepEqual({ status: r.status, signal: r.signal }, { status: 130, signal: null }, r.stderr);
    assert.equal(readFileSync(join(cwd, "rootfs.sqfs"), "utf8"), "the previous squashfs\n");
    assert.deepEqual(readdirSync(cwd).sort(), ["rootfs", "rootfs.a3s-metadata.json", "rootfs.erofs", "rootfs.ext4", "rootfs.sqfs"]);
    assert.ok(statSync(join(cwd, "rootfs.erofs")).size > 0 && existsSync(join(cwd, "rootfs", "sbin", "init")));
    assert.deepEqual(readdirSync(tmp), [], "no staging copy (a3s-*/squashfs-*/root/...) is left in TMPDIR");
  });
});
