// Outputs never destroy what a3s-rootfs did not write, and their errors name
// the user's path and the real cause. Every case runs the real CLI on real
// files, as a user would hit it.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmdirSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { bytesContent, guestProgramPath, isA3sError, RootfsTree, writeOutputs } from "../src/index.js";
import { runCli } from "./helpers/cli.js";
import { tempDir } from "./helpers/temp-dir.js";
import { chooseImageTools } from "../src/outputs/image-tool-choice.js";
import { mkfsErofsCapabilities, mksquashfsCapabilities } from "../src/formats/image/index.js";
import { cacheRoot } from "../src/util/cache-dir.js";

const isRoot = process.getuid?.() === 0;
const probe = guestProgramPath("probe");

/** A project directory as a user has one, and a TMPDIR of its own. */
function project(): { dir: string; tmp: string; build: (...args: string[]) => ReturnType<typeof runCli> } {
  const root = tempDir("a3s-safety-");
  const dir = join(root, "project");
  const tmp = join(root, "tmp");
  mkdirSync(join(dir, "src"), { recursive: true });
  mkdirSync(tmp);
  writeFileSync(join(dir, "src", "main.c"), "int main(void) { return 0; }\n");
  writeFileSync(join(dir, "README"), "my project\n");
  const build = (...args: string[]): ReturnType<typeof runCli> => runCli(["build", "--agent", probe, ...args], { cwd: dir, env: { TMPDIR: tmp } });
  return { dir, tmp, build };
}

/** Every name under `dir`, recursively (symlinks not followed), sorted. */
function listing(dir: string, prefix = ""): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    out.push(prefix + e.name);
    if (e.isDirectory()) out.push(...listing(join(dir, e.name), `${prefix}${e.name}/`));
  }
  return out.sort();
}

describe("outputs never destroy what a3s-rootfs did not write", () => {
  it("refuses to replace a directory it did not write (a project), exits 1 and leaves it whole; --force replaces it", () => {
    const p = project();
    const other = join(p.dir, "..", "other");
    mkdirSync(other);
    writeFileSync(join(other, "keep.txt"), "mine\n");
    const r = p.build("-o", `dir:${other}`);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /refusing to replace .*other: it is a directory a3s-rootfs did not write \(it holds 1 entry, such as "keep.txt"\)/);
    assert.match(r.stderr, /--force/);
    assert.deepEqual(listing(other), ["keep.txt"]);
    assert.deepEqual(readdirSync(join(p.dir, "..")).sort(), ["other", "project", "tmp"], "no temporary or sidecar is left");
    assert.deepEqual(readdirSync(p.tmp), []);

    const forced = p.build("-o", `dir:${other}`, "--force");
    assert.equal(forced.status, 0, forced.stderr);
    assert.ok(existsSync(join(other, "etc", "passwd")));
    assert.ok(!existsSync(join(other, "keep.txt")));
  });

  it("replaces a directory it wrote, again and again, and an empty directory", () => {
    const p = project();
    for (let i = 0; i < 2; i++) {
      const r = p.build("-o", "dir:rootfs");
      assert.equal(r.status, 0, r.stderr);
    }
    writeFileSync(join(p.dir, "rootfs", "added-later"), "x");
    assert.equal(p.build("-o", "dir:rootfs").status, 0, "a file added to a3s-rootfs's own directory does not make it foreign");
    assert.ok(!existsSync(join(p.dir, "rootfs", "added-later")));
    mkdirSync(join(p.dir, "empty"));
    assert.equal(p.build("-o", "dir:empty").status, 0);
    assert.ok(existsSync(join(p.dir, "empty", "sbin", "init")));
    assert.deepEqual(readdirSync(p.dir).filter((n) => n.startsWith(".a3s-")), []);
  });

  it("does not take a directory put in its place for its own, though the sidecar is still there", () => {
    const p = project();
    assert.equal(p.build("-o", "dir:rootfs").status, 0);
    renameSync(join(p.dir, "rootfs"), join(p.dir, "moved"));
    mkdirSync(join(p.dir, "rootfs"));
    writeFileSync(join(p.dir, "rootfs", "notes"), "not a rootfs\n");
    const r = p.build("-o", "dir:rootfs");
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /did not write/);
    assert.deepEqual(listing(join(p.dir, "rootfs")), ["notes"]);
    // A sidecar copied beside a foreign directory does not make it ours either.
    copyFileSync(join(p.dir, "rootfs.a3s-metadata.json"), join(p.dir, "moved-copy.a3s-metadata.json"));
    mkdirSync(join(p.dir, "moved-copy"));
    writeFileSync(join(p.dir, "moved-copy", "f"), "x");
    assert.equal(p.build("-o", "dir:moved-copy").status, 1);
  });

  it("refuses a directory that filled up while the build was writing (checked again just before publishing)", async () => {
    const dir = tempDir("a3s-late-");
    const target = join(dir, "rootfs");
    mkdirSync(target);
    const tree = new RootfsTree();
    for (let i = 0; i < 4000; i++) tree.addFile(`/d${i % 40}/f${i}`, bytesContent("x"));
    // Once the temporary exists the first check has passed; the user's file arrives during the write.
    const watcher = setInterval(() => {
      if (readdirSync(dir).some((n) => n.startsWith(".a3s-")) && !existsSync(join(target, "arrived"))) writeFileSync(join(target, "arrived"), "mine\n");
    }, 1);
    try {
      await assert.rejects(writeOutputs(tree, [{ format: "dir", path: target }], { epoch: 0, warn: () => {} }), (e) => isA3sError(e, "EEXIST"));
    } finally {
      clearInterval(watcher);
    }
    assert.deepEqual(readdirSync(target), ["arrived"]);
    assert.deepEqual(readdirSync(dir), ["rootfs"]);
  });

  it("never writes over /, system directories, the current directory, home or their ancestors, --force or not", () => {
    const p = project();
    const home = join(p.dir, "..", "home", "me");
    mkdirSync(home, { recursive: true });
    const cases: [string, RegExp][] = [
      ["dir:.", /it is the current directory/],
      ["dir:..", /it holds the current directory/],
      ["tar:.", /it is the current directory/],
      ["dir:/", /it is the root directory/],
      ["dir:/etc", /it is a system directory/],
      ["tar:/usr", /it is a system directory/],
      ["dir:/var/lib", /it is a system directory/],
      ["tar:/etc/passwd", /it is inside \/etc, a system directory/],
      ["tar:/proc/self/x", /it is inside \/proc, a kernel filesystem/],
      [`dir:${home}`, /it is your home directory/],
      [`dir:${join(home, "..")}`, /it holds your home directory/],
    ];
    for (const [output, why] of cases) {
      for (const force of [[], ["--force"]]) {
        const r = runCli(["build", "--agent", probe, "-o", output, ...force], { cwd: p.dir, env: { TMPDIR: p.tmp, HOME: home } });
        assert.equal(r.status, 2, `${output}: ${r.stderr}`);
        assert.match(r.stderr, why, output);
      }
    }
    assert.deepEqual(listing(p.dir), ["README", "src", "src/main.c"]);
    assert.deepEqual(readdirSync(p.tmp), []);
    assert.ok(lstatSync("/etc/passwd").isFile());
  });

  it("resolves the parent through symlinks: a link to the project is a name of its own, replaced only with --force", () => {
    const p = project();
    symlinkSync(".", join(p.dir, "here"));
    const refused = p.build("-o", "dir:here");
    assert.equal(refused.status, 1, refused.stderr);
    assert.match(refused.stderr, /it is a symbolic link/);
    const linkToParent = p.build("-o", "dir:here/..");
    assert.equal(linkToParent.status, 2, "here/.. is lexically the project's own directory");
    const forced = p.build("-o", "dir:here", "--force");
    assert.equal(forced.status, 0, forced.stderr);
    assert.ok(lstatSync(join(p.dir, "here")).isDirectory(), "the link is replaced by the rootfs");
    assert.deepEqual(listing(p.dir).filter((n) => !n.startsWith("here/")), ["README", "here", "here.a3s-metadata.json", "src", "src/main.c"]);
  });

  it("never turns a file into a directory, or a directory into a file, without --force", () => {
    const p = project();
    writeFileSync(join(p.dir, "notes.txt"), "my notes\n");
    const dirOverFile = p.build("-o", "dir:notes.txt");
    assert.equal(dirOverFile.status, 1);
    assert.match(dirOverFile.stderr, /refusing to replace notes.txt: it is a regular file, and a dir output would replace it with a directory/);
    assert.equal(readFileSync(join(p.dir, "notes.txt"), "utf8"), "my notes\n");
    const fileOverDir = p.build("-o", "tar:src");
    assert.equal(fileOverDir.status, 1);
    assert.match(fileOverDir.stderr, /refusing to replace src: it is a directory, and a tar output would replace it with a file/);
    assert.deepEqual(listing(join(p.dir, "src")), ["main.c"]);

    assert.equal(p.build("-o", "dir:notes.txt", "--force").status, 0);
    assert.ok(lstatSync(join(p.dir, "notes.txt")).isDirectory());
    assert.equal(p.build("-o", "cpio:src", "--force").status, 0);
    assert.ok(lstatSync(join(p.dir, "src")).isFile());
  });

  it("replaces a regular file with a file output (that is what writing an output means)", () => {
    const p = project();
    writeFileSync(join(p.dir, "rootfs.tar"), "an old tarball\n");
    assert.equal(p.build("-o", "tar:rootfs.tar").status, 0);
    assert.ok(readFileSync(join(p.dir, "rootfs.tar")).length > 10240);
  });

  it("two outputs with one path, or one inside a dir output, are a usage error raised before any work", () => {
    const p = project();
    symlinkSync(".", join(p.dir, "alias"));
    const cases: [string[], RegExp][] = [
      [["-o", "tar:X", "-o", "cpio:X"], /two outputs write X \(tar and cpio\)/],
      [["-o", "tar:X", "-o", "dir:X"], /two outputs write X/],
      [["-o", "tar:X", "-o", "cpio:./X"], /two outputs write \.\/X/],
      [["-o", "tar:X", "-o", "cpio:alias/X"], /two outputs write alias\/X/],
      [["-o", "dir:R", "-o", "tar:R/inside.tar"], /inside the dir output R/],
      [["-o", "dir:R", "-o", "tar:R.a3s-metadata.json"], /on its sidecar/],
    ];
    for (const [args, why] of cases) {
      const r = p.build(...args);
      assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, why);
    }
    assert.deepEqual(listing(p.dir), ["README", "alias", "src", "src/main.c"]);
  });

  it("a legal 240-byte name works for a file output; a dir output's name must leave room for its sidecar", () => {
    const p = project();
    const name = "n".repeat(236) + ".tar";
    const r = p.build("-o", `tar:${name}`);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(existsSync(join(p.dir, name)));
    const dir = p.build("-o", `dir:${"d".repeat(240)}`);
    assert.equal(dir.status, 2);
    assert.match(dir.stderr, /name is too long: 240 bytes, at most 237 \(its metadata sidecar/);
    const tooLong = p.build("-o", `tar:${"n".repeat(256)}`);
    assert.equal(tooLong.status, 2);
    assert.match(tooLong.stderr, /name is too long: 256 bytes, at most 255/);
    assert.deepEqual(readdirSync(p.dir).filter((n) => n.startsWith(".a3s-")), []);
  });

  it("refuses compression it does not write instead of writing an uncompressed file under that name", () => {
    const p = project();
    for (const [output, why] of [
      ["cpio:x.cpio.bz2", /does not write \.bz2 compression; a cpio output is compressed by a \.gz or \.zst name/],
      ["tar:x.tar.xz", /does not write \.xz compression/],
      ["tar:x.tlz", /does not write \.tlz compression/],
      ["ext4:x.ext4.gz", /writes ext4 images uncompressed, but the name says gzip/],
      ["erofs:x.erofs.zst", /writes erofs images uncompressed, but the name says zstd/],
    ] as const) {
      const r = p.build("-o", output);
      assert.equal(r.status, 2, `${output}: ${r.stderr}`);
      assert.match(r.stderr, why);
    }
    assert.deepEqual(listing(p.dir), ["README", "src", "src/main.c"]);
  });
});

describe("an output's errors name the user's path and the real cause", () => {
  it("a missing directory: named, before any work, without a tool's usage text (erofs, and every format)", () => {
    const p = project();
    for (const format of ["erofs", "ext4", "squashfs", "tar", "cpio", "dir"]) {
      const r = p.build("-o", `${format}:missing/out.${format}`);
      assert.equal(r.status, 1, `${format}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`cannot write ${p.dir}/missing/out.${format}: the directory ${p.dir}/missing does not exist`));
      assert.doesNotMatch(r.stderr, /usage|\.a3s-/i);
    }
    assert.deepEqual(readdirSync(p.tmp), []);
  });

  it("a directory this user may not write to: named, before any work", { skip: isRoot && "root may write anywhere; the read-only mount test covers root" }, () => {
    const p = project();
    const locked = join(p.dir, "locked");
    mkdirSync(locked);
    chmodSync(locked, 0o555);
    const r = p.build("-o", `erofs:locked/x.erofs`);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`cannot write ${locked}/x.erofs: no permission to create files in ${locked}`));
  });

  it("an entry name over the filesystem's limits inside a dir output is reported at the user's path", async () => {
    // The tree holds paths up to PATH_MAX (tree-limits.test.ts), but on the
    // host they sit below the output's own path: 16 levels of 250-byte names
    // (4,016 bytes, legal in the tree) under a 200-byte directory name are
    // over the host's PATH_MAX.
    const dir = join(tempDir("a3s-deep-"), "d".repeat(200));
    mkdirSync(dir);
    const tree = new RootfsTree();
    const deep = "/" + Array.from({ length: 16 }, (_, i) => `${i}`.padEnd(250, "x")).join("/");
    tree.addFile(deep + "/f", bytesContent("x"));
    const target = join(dir, "rootfs");
    await assert.rejects(writeOutputs(tree, [{ format: "dir", path: target }], { epoch: 0, warn: () => {} }), (e: Error) => {
      assert.ok(isA3sError(e, "ENAMETOOLONG"), String(e));
      assert.match(e.message, new RegExp(`cannot write the dir output ${target}: a name is too long for the filesystem: ${target}/0x`));
      assert.doesNotMatch(e.message, /\.a3s-/);
      return true;
    });
    assert.deepEqual(readdirSync(dir), []);
  });

  describe("on small and read-only filesystems", { skip: !isRoot && "mounting a small filesystem needs root" }, () => {
    /** A tmpfs of `kib` KiB mounted on a fresh directory, unmounted when the test ends. */
    const mount = (t: TestContext, kib: number, readOnly = false): string => {
      const at = mkdtempSync(join(tmpdir(), "a3s-mnt-"));
      t.after(() => {
        spawnSync("umount", [at]);
        rmdirSync(at);
      });
      const r = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${kib}k${readOnly ? ",ro" : ""}`, "tmpfs", at], { encoding: "utf8" });
      assert.equal(r.status, 0, r.stderr);
      return at;
    };
    // The probe with 4 MiB of random bytes appended: a valid static agent that no compression can shrink.
    const bigAgent = join(tempDir("a3s-agent-"), "agent");
    copyFileSync(probe, bigAgent);
    appendFileSync(bigAgent, randomBytes(4 << 20));

    it("a read-only filesystem is named as such, before any work, for every format", (t) => {
      const ro = mount(t, 1024, true);
      const p = project();
      for (const format of ["dir", "tar", "cpio", "ext4", "erofs", "squashfs"]) {
        const r = p.build("-o", `${format}:${ro}/out`);
        assert.equal(r.status, 1, `${format}: ${r.stderr}`);
        assert.match(r.stderr, new RegExp(`cannot write ${ro}/out: ${ro} is on a read-only filesystem`), format);
        assert.doesNotMatch(r.stderr, /usage/i);
      }
    });

    for (const format of ["dir", "tar", "cpio", "ext4", "erofs", "squashfs"]) {
      it(`${format}: a full disk is "no space left" at the user's path, never a temporary name or a size-estimate bug, and leaves nothing`, (t) => {
        const small = mount(t, 2048);
        const p = project();
        const r = runCli(["build", "--agent", bigAgent, "-o", `${format}:${small}/rootfs.out`], { cwd: p.dir, env: { TMPDIR: p.tmp } });
        assert.equal(r.status, 1, r.stderr);
        assert.match(r.stderr, new RegExp(`${small}/rootfs.out: no space left on the filesystem holding ${small}`));
        assert.doesNotMatch(r.stderr, /\.a3s-|size estimate|usage/i);
        assert.deepEqual(readdirSync(small), [], "no temporary is left on the full disk");
        assert.deepEqual(readdirSync(p.tmp), []);
      });
    }

    for (const format of ["erofs", "squashfs"]) {
      it(`${format}: a full TMPDIR is named as the temporary directory, not the output's (or not needed at all: the tar stream)`, async (t) => {
        const smallTmp = mount(t, 2048);
        const p = project();
        const r = runCli(["build", "--no-cache", "--agent", bigAgent, "-o", `${format}:rootfs.out`], { cwd: p.dir, env: { TMPDIR: smallTmp } });
        const tool = (await chooseImageTools(format as "erofs" | "squashfs", { epoch: 0, warn: () => {}, toolCache: { dir: cacheRoot(), provision: false } }))?.[format === "erofs" ? "mkfs.erofs" : "mksquashfs"];
        const streams = tool !== undefined && (format === "erofs" ? await mkfsErofsCapabilities(tool) : await mksquashfsCapabilities(tool)).tarInput;
        if (streams) {
          // The tree goes to the tool as a stream: nothing is staged in TMPDIR, so its size does not matter.
          assert.equal(r.status, 0, r.stderr);
          assert.deepEqual(readdirSync(smallTmp), []);
          return;
        }
        assert.equal(r.status, 1, r.stderr);
        assert.match(r.stderr, new RegExp(`${p.dir}/rootfs.out: no space left in the temporary directory ${smallTmp}/a3s-`));
        assert.match(r.stderr, /TMPDIR/);
        assert.deepEqual(readdirSync(smallTmp), []);
        assert.deepEqual(listing(p.dir), ["README", "src", "src/main.c"]);
      });
    }
  });
});
