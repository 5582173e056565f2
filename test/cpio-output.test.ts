import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { buffer } from "node:stream/consumers";
import { after, describe, it } from "node:test";
import { isA3sError } from "../src/errors.js";
import { cpioOutput } from "../src/outputs/registry.js";
import { cpioStream } from "../src/formats/newc/index.js";
import { bytesContent, RootfsTree } from "../src/tree/index.js";
import { observeDirectory } from "./helpers/extracted-tree.js";
import { imageDifferences } from "./helpers/image-compare.js";
import { expectedView } from "./helpers/image-sample.js";
import { SAMPLE, sampleTree } from "./helpers/sample-tree.js";
import { tempDir } from "./helpers/temp-dir.js";

const isRoot = process.getuid?.() === 0;

async function writeCpio(tree: RootfsTree, name = "initramfs.cpio", warnings: string[] = []): Promise<string> {
  const path = join(tempDir("a3s-cpio-"), name);
  await cpioOutput.write(tree, { tmp: path, final: path }, { epoch: 0, warn: (m) => warnings.push(m) });
  return path;
}

const sha256 = (data: Buffer): string => createHash("sha256").update(data).digest("hex");

interface RawEntry {
  name: string;
  ino: number;
  mode: number;
  uid: number;
  nlink: number;
  mtime: number;
  size: number;
  rdev: string;
  check: number;
  data: Buffer;
  /** Offset of the header and of the data, to check alignment. */
  at: number;
  dataAt: number;
}

/** The entries of a newc archive as its raw headers say, parsed here without the project's reader. */
function rawEntries(archive: Buffer): RawEntry[] {
  const out: RawEntry[] = [];
  for (let at = 0; ; ) {
    assert.equal(archive.toString("latin1", at, at + 6), "070701", `magic at ${at}`);
    const f = (n: number): number => parseInt(archive.toString("latin1", 6 + at + n * 8, 14 + at + n * 8), 16);
    const nameSize = f(11);
    const name = archive.toString("utf8", at + 110, at + 110 + nameSize - 1);
    const dataAt = Math.ceil((at + 110 + nameSize) / 4) * 4;
    const size = f(6);
    out.push({
      name,
      ino: f(0),
      mode: f(1),
      uid: f(2),
      nlink: f(4),
      mtime: f(5),
      size,
      rdev: `${f(9)}:${f(10)}`,
      check: f(12),
      data: archive.subarray(dataAt, dataAt + size),
      at,
      dataAt,
    });
    if (name === "TRAILER!!!") return out;
    at = Math.ceil((dataAt + size) / 4) * 4;
  }
}

describe("cpio output", () => {
  const sample = sampleTree();
  after(() => sample.dispose());

  it("is extracted by GNU cpio with every kind, mode, owner, content, device and the hardlink identity", { skip: !isRoot && "extraction with owners and devices needs root" }, async () => {
    const archive = await writeCpio(sample.tree);
    const dir = join(tempDir("a3s-cpio-x-"), "root");
    mkdirSync(dir);
    execFileSync("cpio", ["-idm", "--no-absolute-filenames", "--quiet", "-F", archive], { cwd: dir });
    const got = observeDirectory(dir, { xattrs: false });
    const want = await expectedView(sample.tree);
    // GNU cpio -m restores the mtimes of files only, not of directories or
    // symlinks; those are checked in the raw headers below.
    for (const [path, o] of got) {
      if (o.kind === "directory" || o.kind === "symlink") o.mtime = want.get(path)?.mtime ?? o.mtime;
    }
    assert.deepEqual(imageDifferences(got, want, { extra: ["/dev/console", "/dev/null"] }), []);
    assert.deepEqual(
      ["/dev/console", "/dev/null"].map((p) => got.get(p)).map((o) => [o?.kind, o?.mode.toString(8), o?.rdev, o?.uid]),
      [
        ["char", "600", "5:1", 0],
        ["char", "666", "1:3", 0],
      ],
    );
    const ids = SAMPLE.hardlinks.map((p) => got.get(p)?.identity);
    assert.equal(new Set(ids).size, 1);
    assert.equal(got.get("/data/huge-owner")?.uid, 3_000_000);
    assert.equal(got.get("/usr/bin/su")?.mode, 0o4755);
  });

  it("follows the kernel's initramfs rules: '.' first, relative names, 4-byte alignment, TRAILER!!!, 512-byte padding", async () => {
    const bytes = readFileSync(await writeCpio(sample.tree));
    const entries = rawEntries(bytes);
    const names = entries.map((e) => e.name);
    const treeNames = sample.tree.entries().map((e) => (e.path === "/" ? "." : e.path.slice(1)));
    assert.deepEqual(names, [...treeNames, "dev/console", "dev/null", "TRAILER!!!"]);
    for (const e of entries) {
      assert.equal(e.at % 4, 0, `${e.name} header alignment`);
      assert.equal(e.dataAt % 4, 0, `${e.name} data alignment`);
      assert.equal(e.check, 0);
    }
    assert.equal(bytes.length % 512, 0);
    const last = entries[entries.length - 1] as RawEntry;
    assert.ok(bytes.subarray(last.dataAt).every((b) => b === 0), "only zeros after the trailer");
    // Every entry's mtime is the tree's, directories and symlinks included.
    const byName = new Map(entries.map((e) => [e.name, e]));
    for (const e of sample.tree.entries()) {
      const raw = byName.get(e.path === "/" ? "." : e.path.slice(1));
      assert.equal(raw?.mtime, e.inode.mtime, e.path);
      assert.equal(raw?.uid, e.inode.uid, e.path);
    }
    const link = byName.get("bin/sh");
    assert.equal(link?.data.toString(), "busybox");
    assert.equal(link?.mode, 0o120777);
    assert.equal(byName.get("dev/vda")?.rdev, "254:0");
    assert.equal(byName.get("dev/vda")?.mode, 0o060660);
    assert.equal(byName.get("tmp")?.mode, 0o041777);
  });

  it("stores a hardlinked file once, with its last name, every name sharing ino and nlink (GNU cpio's convention)", async () => {
    const entries = rawEntries(readFileSync(await writeCpio(sample.tree)));
    const names = SAMPLE.hardlinks.map((p) => entries.find((e) => e.name === p.slice(1)) as RawEntry);
    assert.deepEqual(
      names.map((e) => [e.size, e.nlink]),
      [
        [0, 3],
        [0, 3],
        [3000, 3],
      ],
    );
    assert.equal(new Set(names.map((e) => e.ino)).size, 1);
    const inos = entries.filter((e) => e.name !== "TRAILER!!!").map((e) => e.ino);
    assert.equal(new Set(inos).size, inos.length - 2, "only the hardlinks share an inode number");
  });

  it("keeps the tree's own /dev/console and adds /dev when the tree has none", async () => {
    const own = new RootfsTree();
    own.addDevice("/dev/console", "char", 5, 1, { mode: 0o620, gid: 5 });
    const ownEntries = rawEntries(readFileSync(await writeCpio(own)));
    assert.deepEqual(
      ownEntries.filter((e) => e.name.startsWith("dev/")).map((e) => [e.name, e.mode.toString(8)]),
      [
        ["dev/console", "20620"],
        ["dev/null", "20666"],
      ],
    );
    const bare = new RootfsTree();
    bare.addFile("/init", bytesContent("#!/bin/sh\n"), { mode: 0o755 });
    const names = rawEntries(readFileSync(await writeCpio(bare))).map((e) => `${e.name} ${e.mode.toString(8)}`);
    assert.deepEqual(names, [". 40755", "init 100755", "dev 40755", "dev/console 20600", "dev/null 20666", "TRAILER!!! 0"]);
    const linked = new RootfsTree();
    linked.addSymlink("/dev", "/run/dev");
    const linkedNames = rawEntries(readFileSync(await writeCpio(linked))).map((e) => e.name);
    assert.deepEqual(linkedNames, [".", "dev", "TRAILER!!!"], "nothing is added through a /dev symlink");
    const without = rawEntries(await buffer(cpioStream(bare, { initramfsDevices: false }))).map((e) => e.name);
    assert.deepEqual(without, [".", "init", "TRAILER!!!"]);
  });

  it("lists, through GNU cpio, the same names", () => {
    // A separate check with the independent tool that needs no root.
    return writeCpio(sample.tree).then((archive) => {
      const listed = execFileSync("cpio", ["-it", "--quiet", "-F", archive], { encoding: "utf8" }).trimEnd().split("\n");
      assert.equal(listed[0], ".");
      assert.ok(listed.includes("dev/console") && listed.includes("dev/null"));
      assert.ok(listed.includes(SAMPLE.deepLongPath.slice(1)));
      assert.equal(listed.length, sample.tree.entries().length + 2);
    });
  });

  it("gives identical bytes on every write: .cpio, .cpio.gz and .cpio.zst", async () => {
    for (const name of ["i.cpio", "i.cpio.gz", "i.cpio.zst"]) {
      const a = readFileSync(await writeCpio(sample.tree, name));
      const b = readFileSync(await writeCpio(sample.tree, name));
      assert.equal(sha256(a), sha256(b), name);
    }
  });

  it("compresses by extension: gzip with no name or mtime in its header, zstd that zstd -d reads", async () => {
    const plain = readFileSync(await writeCpio(sample.tree, "p.cpio"));
    const gz = await writeCpio(sample.tree, "p.cpio.gz");
    const gzBytes = readFileSync(gz);
    assert.deepEqual([...gzBytes.subarray(0, 4)], [0x1f, 0x8b, 8, 0], "deflate, no FNAME/FCOMMENT flags");
    assert.equal(gzBytes.readUInt32LE(4), 0, "mtime 0");
    assert.ok(execFileSync("gzip", ["-dc", gz], { maxBuffer: 1 << 26 }).equals(plain));
    const zst = await writeCpio(sample.tree, "p.cpio.zst");
    assert.deepEqual([...readFileSync(zst).subarray(0, 4)], [0x28, 0xb5, 0x2f, 0xfd]);
    assert.ok(execFileSync("zstd", ["-dcq", zst], { maxBuffer: 1 << 26 }).equals(plain));
  });

  it("refuses a file of 4 GiB or more with ETOOBIG before writing anything", () => {
    const tree = new RootfsTree();
    tree.addFile("/disk.img", { type: "hostFile", path: "/nonexistent", size: 2 ** 32 });
    assert.throws(() => cpioStream(tree), (e) => isA3sError(e, "ETOOBIG") && e.subject === "/disk.img");
  });

  it("warns that xattrs are dropped, naming how many entries lose them", async () => {
    const warnings: string[] = [];
    await writeCpio(sample.tree, "w.cpio", warnings);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] as string, /cannot store extended attributes: 2 entries/);
  });
});
