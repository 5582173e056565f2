// The limits live in the tree itself, so every reader gets them (tar, cpio,
// dir, images, layers), and every walk is iterative: a hostile archive meets
// a clear limit error, and a deep but legal tree walks without overflowing
// the call stack.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { bytesContent, isA3sError, RootfsTree } from "../src/index.js";
import { DEFAULT_TREE_LIMITS, NAME_MAX, PATH_MAX } from "../src/tree/index.js";
import { CLI, runCli } from "./helpers/cli.js";
import { pax, raw, tar } from "./helpers/raw-tar.js";
import { tempDir } from "./helpers/temp-dir.js";

const text = (s: string) => bytesContent(s);

describe("tree limits", () => {
  it(`refuses a name longer than NAME_MAX (${NAME_MAX} bytes); one of ${NAME_MAX} fits`, () => {
    const tree = new RootfsTree();
    tree.addFile("/" + "n".repeat(NAME_MAX), text("x"));
    assert.throws(
      () => tree.addFile("/dir/" + "n".repeat(NAME_MAX + 1), text("x")),
      (e) => isA3sError(e, "EPATH") && /NAME_MAX/.test(e.message) && e.subject === "/dir/" + "n".repeat(NAME_MAX + 1),
    );
    assert.throws(() => tree.addFile("/" + "é".repeat(128) + "/f", text("x")), (e) => isA3sError(e, "EPATH"), "256 bytes in 128 characters");
  });

  it(`refuses a path that lands beyond PATH_MAX (${PATH_MAX - 1} bytes) through a symlink graft; ${PATH_MAX - 1} bytes fit`, () => {
    const tree = new RootfsTree();
    const dir = "/" + Array.from({ length: 20 }, () => "d".repeat(99)).join("/"); // 2000 bytes
    tree.addDirectory(dir);
    tree.addSymlink("/s", dir);
    // "/s/NAME" is short, but lands at DIR/NAME.
    const room = PATH_MAX - 1 - dir.length - 1;
    tree.addFile(`/s/${"a".repeat(200)}/${"b".repeat(200)}`, text("fits"));
    const filler = Array.from({ length: Math.ceil(room / 100) }, (_, i) => (i === 0 ? "c".repeat(99) : "c".repeat(99))).join("/");
    const fits = filler.slice(0, room).replace(/\/$/, "x");
    tree.addFile(`/s/${fits}`, text("at the limit"));
    assert.equal(tree.resolve(`/s/${fits}`)?.path.length, PATH_MAX - 1);
    assert.throws(
      () => tree.addFile(`/s/${fits}x`, text("one byte more")),
      (e) => isA3sError(e, "EPATH") && /PATH_MAX/.test(e.message) && /4096 bytes/.test(e.message),
    );
    assert.throws(() => tree.addSymlink("/long", "t".repeat(PATH_MAX)), (e) => isA3sError(e, "EPATH") && /target/.test(e.message));
  });

  it("refuses an entry deeper than maxDepth, also when a symlink grafts the extra levels", () => {
    const tree = new RootfsTree({ limits: { maxDepth: 10 } });
    tree.addFile("/" + "d/".repeat(9) + "f", text("depth 10"));
    assert.throws(() => tree.addFile("/" + "d/".repeat(10) + "f", text("depth 11")), (e) => isA3sError(e, "ELIMIT") && /maxDepth 10/.test(e.message));
    tree.addDirectory("/" + "d/".repeat(9) + "e");
    tree.addSymlink("/deep", "/" + "d/".repeat(9) + "e");
    assert.throws(() => tree.addFile("/deep/x", text("grafted")), (e) => isA3sError(e, "ELIMIT") && e.subject === "/deep/x");
    assert.equal(DEFAULT_TREE_LIMITS.maxDepth, 1024);
  });

  it("counts names against maxEntries, frees them on remove and on replacement", () => {
    const tree = new RootfsTree({ limits: { maxEntries: 6 } });
    tree.addFile("/a/b/c", text("x")); // /, /a, /a/b, /a/b/c
    tree.addHardlink("/h", "/a/b/c");
    assert.equal(tree.entryCount, 5);
    tree.addFile("/f", text("y"));
    assert.throws(() => tree.addFile("/g", text("z")), (e) => isA3sError(e, "ELIMIT") && /6 entries/.test(e.message));
    tree.addFile("/a", text("a file now")); // replaces /a with its two names below
    assert.equal(tree.entryCount, 4);
    tree.addFile("/g", text("z"));
    assert.equal(tree.remove("/g"), true);
    assert.equal(tree.entryCount, 4);
    assert.equal(tree.entries().length, tree.entryCount);
  });
});

/**
 * The tar from issue 9: 12,000 nested directories where a symlink grafts a
 * new short name every 100 levels, so no member name is long. Before the
 * tree had limits, `inspect` died of "Maximum call stack size exceeded".
 */
function graftedDeepTar(levels: number, graft: number): Buffer {
  const parts: Buffer[] = [];
  for (let k = 0; k * graft < levels; k++) {
    const base = `g${k}`;
    if (k === 0) parts.push(raw.dir(base));
    else parts.push(pax({ linkpath: `g${k - 1}/` + "d/".repeat(graft - 1) + "d" }), raw.symlink(base, "placeholder"));
    for (let i = 1; i <= graft && k * graft + i <= levels; i++) parts.push(pax({ path: base + "/" + "d/".repeat(i - 1) + "d" }), raw.dir("placeholder"));
  }
  return tar(...parts);
}

describe("inspect of a hostile deep tar", () => {
  it("12,000 nested directories grafted by symlinks every 100 levels: a clear limit error, exit 1, no crash", () => {
    const dir = tempDir();
    const file = join(dir, "deep.tar");
    writeFileSync(file, graftedDeepTar(12_000, 100));
    const r = runCli(["inspect", file]);
    assert.equal(r.status, 1, r.stderr);
    assert.doesNotMatch(r.stderr, /call stack/);
    assert.match(r.stderr, /error: .*deep\.tar: member "g10\/d(\/d)*": .*lands 1025 directories deep, deeper than the tree allows \(maxDepth 1024\)/);
  });
});

describe("deep but legal trees walk without recursion", () => {
  /**
   * Node's stack, cut to 100 KiB: a recursive walk 1,000 levels deep does not
   * fit (the first check proves it), an iterative one does.
   */
  const SMALL_STACK = "--stack-size=100";
  const LEVELS = 1000;

  it("the small stack is too small for a recursive walk of this depth", () => {
    // A walk written the way the tree's used to be: a closure that calls itself per directory.
    const recursiveWalk = `
      const top = {}; let at = top;
      for (let i = 0; i < ${LEVELS}; i++) at = at.d = {};
      const visit = (path, node) => { for (const name of Object.keys(node).sort()) visit(path + "/" + name, node[name]); };
      visit("", top);`;
    const r = spawnSync(process.execPath, [SMALL_STACK, "-e", recursiveWalk], { encoding: "utf8" });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /Maximum call stack size exceeded/);
  });

  it(`inspects a directory ${LEVELS} levels deep, and its tar, cpio, erofs and squashfs images, on that stack`, () => {
    const work = tempDir();
    const root = join(work, "root");
    const deepest = join(root, ...Array.from({ length: LEVELS }, () => "d"));
    mkdirSync(deepest, { recursive: true });
    writeFileSync(join(deepest, "f"), "at the bottom\n");
    const images = {
      dir: root,
      tar: join(work, "deep.tar"),
      cpio: join(work, "deep.cpio"),
      erofs: join(work, "deep.erofs"),
      squashfs: join(work, "deep.squashfs"),
    };
    execFileSync("tar", ["-cf", images.tar, "-C", root, "."]);
    writeFileSync(images.cpio, execFileSync("sh", ["-c", "find . | cpio -o -H newc --quiet"], { cwd: root, maxBuffer: 1 << 26 }));
    execFileSync("mkfs.erofs", [images.erofs, root], { stdio: "ignore" });
    execFileSync("mksquashfs", [root, images.squashfs, "-quiet", "-no-progress", "-all-root"], { stdio: "ignore" });
    for (const [format, path] of Object.entries(images)) {
      const r = spawnSync(process.execPath, [SMALL_STACK, CLI, "inspect", "--json", path], { encoding: "utf8" });
      assert.equal(r.status, 0, `${format}: ${r.stderr}`);
      const report = JSON.parse(r.stdout) as { format: string; entries: number; byKind: Record<string, number> };
      assert.equal(report.format, format);
      assert.equal(report.byKind.directory, LEVELS + 1, format);
      assert.equal(report.byKind.file, 1, format);
    }
  });
});
