import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { buffer } from "node:stream/consumers";
import { after, describe, it } from "node:test";
import { isA3sError } from "../src/errors.js";
import { ChunkWriter } from "../src/formats/archive/index.js";
import { tarOutput } from "../src/outputs/registry.js";
import { TAR_RECORD, tarStream, writeTarHeader, writeTarStream } from "../src/formats/tar/index.js";
import { RootfsTree, type ContentRef } from "../src/tree/index.js";
import { observeDirectory } from "./helpers/extracted-tree.js";
import { imageDifferences } from "./helpers/image-compare.js";
import { expectedView } from "./helpers/image-sample.js";
import { BIG_FILE_SIZE, SAMPLE, sampleTree } from "./helpers/sample-tree.js";
import { tempDir } from "./helpers/temp-dir.js";

const isRoot = process.getuid?.() === 0;
const quiet = { epoch: 0, warn: (): void => {} };

async function writeTar(tree: RootfsTree, name = "rootfs.tar"): Promise<string> {
  const path = join(tempDir("a3s-tar-"), name);
  await tarOutput.write(tree, { tmp: path, final: path }, quiet);
  return path;
}

const sha256 = (path: string): string => createHash("sha256").update(readFileSync(path)).digest("hex");

/** The members of a tar file as its raw headers say, read here without the project's reader. */
function rawMembers(archive: Buffer): { name: string; type: string; size: number; pax: string[] }[] {
  const out: { name: string; type: string; size: number; pax: string[] }[] = [];
  let pax: string[] = [];
  for (let pos = 0; pos + 512 <= archive.length; ) {
    const h = archive.subarray(pos, pos + 512);
    if (h.every((b) => b === 0)) break;
    const str = (at: number, len: number): string => h.toString("utf8", at, at + len).replace(/\0.*$/s, "");
    const size = parseInt(str(124, 12), 8);
    const type = str(156, 1);
    if (type === "x") {
      pax = [...archive.subarray(pos + 512, pos + 512 + size).toString("latin1").matchAll(/\d+ ([^=]+)=/g)].map((m) => m[1] as string);
    } else {
      const prefix = str(345, 155);
      out.push({ name: prefix ? `${prefix}/${str(0, 100)}` : str(0, 100), type, size, pax });
      pax = [];
    }
    pos += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

describe("tar output", () => {
  const sample = sampleTree();
  after(() => sample.dispose());

  it("is extracted by GNU tar with every kind, mode, owner, mtime, link, device, xattr and the hardlink identity", { skip: !isRoot && "extraction with owners and devices needs root" }, async () => {
    const archive = await writeTar(sample.tree);
    const dir = join(tempDir("a3s-tar-x-"), "root");
    mkdirSync(dir);
    execFileSync("tar", ["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", archive, "-C", dir], { stdio: ["ignore", "ignore", "ignore"] });
    const got = observeDirectory(dir, { xattrs: true });
    assert.deepEqual(imageDifferences(got, await expectedView(sample.tree)), []);
    // The checks above compare against the tree; these pin the cases by value.
    const [tool, alias, tool3] = SAMPLE.hardlinks.map((p) => got.get(p));
    assert.equal(alias?.identity, tool?.identity);
    assert.equal(tool3?.identity, tool?.identity);
    assert.equal(got.get(SAMPLE.bigFile)?.uid, 70_000);
    assert.equal(got.get("/data/huge-owner")?.uid, 3_000_000);
    assert.equal(got.get("/data/huge-owner")?.mtime, 4_102_444_800);
    assert.equal(got.get("/usr/bin/su")?.mode, 0o4755);
    assert.equal(got.get("/tmp")?.mode, 0o1777);
    assert.equal(got.get("/dev/vda")?.rdev, "254:0");
    assert.equal(got.get(SAMPLE.ping)?.xattrs?.["security.capability"], "0100000200200000000000000000000000000000");
    assert.equal(got.get(SAMPLE.longTargetLink)?.target, SAMPLE.longTarget);
  });

  it("lists, through GNU tar, exactly the tree's names in the tree's order", async () => {
    const archive = await writeTar(sample.tree);
    const listed = execFileSync("tar", ["-tf", archive], { encoding: "utf8" }).trimEnd().split("\n");
    const want = sample.tree.entries().map((e) => (e.path === "/" ? "./" : e.path.slice(1) + (e.kind === "directory" ? "/" : "")));
    assert.deepEqual(listed, want);
  });

  it("uses PAX records only where ustar cannot hold a value, with no time-varying keys", async () => {
    const members = rawMembers(readFileSync(await writeTar(sample.tree)));
    const withPax = new Map(members.filter((m) => m.pax.length > 0).map((m) => [m.name, m.pax]));
    // A path too long for ustar's fields: the ustar name is a truncated stand-in, the PAX path is the truth.
    // The 150-byte component, the 319-byte leaf and the three deepest segment
    // directories: for each, no "/" leaves ≤155 bytes before and ≤100 after.
    const longOnes = members.filter((m) => m.pax.includes("path"));
    assert.equal(longOnes.length, 5);
    assert.deepEqual(withPax.get("data/huge-owner"), ["uid", "gid"]);
    assert.deepEqual(withPax.get("etc/hostname"), ["SCHILY.xattr.user.test"]);
    assert.deepEqual(withPax.get("usr/bin/ping"), ["SCHILY.xattr.security.capability", "SCHILY.xattr.user.bytes"]);
    assert.deepEqual(withPax.get("long/link-to-long-target"), ["linkpath"]);
    // 171 bytes split into ustar prefix + name: no PAX needed.
    assert.equal(withPax.get(SAMPLE.prefixSplit.slice(1)), undefined);
    assert.ok(members.some((m) => m.name === SAMPLE.prefixSplit.slice(1)), "prefix/name split reassembles the path");
    // uid 70000 fits 7 octal digits: no PAX.
    assert.equal(withPax.get("data/big.bin"), undefined);
    for (const keys of withPax.values()) {
      for (const k of keys) assert.ok(!["atime", "ctime"].includes(k), `time-varying PAX key ${k}`);
    }
  });

  it("ends with two zero blocks and is padded to a 10240-byte record", async () => {
    const bytes = readFileSync(await writeTar(sample.tree));
    assert.equal(bytes.length % TAR_RECORD, 0);
    const members = rawMembers(bytes);
    assert.equal(members.length, sample.tree.entries().length);
    assert.ok(bytes.length > BIG_FILE_SIZE);
    assert.ok(bytes.subarray(bytes.length - 1024).every((b) => b === 0));
  });

  it("gives identical bytes on every write, plain, .gz and .zst", async () => {
    for (const name of ["r.tar", "r.tar.gz", "r.tar.zst"]) {
      const a = await writeTar(sample.tree, name);
      const b = await writeTar(sample.tree, name);
      assert.equal(sha256(a), sha256(b), name);
    }
  });

  it("compresses .tar.gz and .tar.zst to the same tar bytes (checked with gzip and zstd)", async () => {
    const plain = readFileSync(await writeTar(sample.tree, "p.tar"));
    const gz = await writeTar(sample.tree, "p.tar.gz");
    const zst = await writeTar(sample.tree, "p.tar.zst");
    assert.ok(execFileSync("gzip", ["-dc", gz], { maxBuffer: 1 << 26 }).equals(plain));
    assert.ok(execFileSync("zstd", ["-dcq", zst], { maxBuffer: 1 << 26 }).equals(plain));
  });

  it("stores a size of 8 GiB or more in a PAX record that GNU tar reads", () => {
    const out = new ChunkWriter();
    const size = 8 * 1024 ** 3 + 5;
    writeTarHeader(out, { name: "huge.img", type: "0", mode: 0o644, uid: 0, gid: 0, size, mtime: 1_700_000_000 });
    out.flush();
    const header = Buffer.concat(out.ready);
    assert.match(header.toString("latin1"), /\d+ size=8589934597\n/);
    // GNU tar lists the member from the headers alone, then reports the missing data.
    const r = spawnSync("tar", ["-tv", "--numeric-owner"], { input: header, encoding: "utf8" });
    assert.match(r.stdout, /0\/0\s+8589934597 .* huge\.img/);
  });

  it("stores an mtime before 1970 in a PAX record that GNU tar reads", () => {
    const out = new ChunkWriter();
    writeTarHeader(out, { name: "old", type: "0", mode: 0o644, uid: 0, gid: 0, size: 0, mtime: -100 });
    out.zeros(1024);
    out.flush();
    const r = spawnSync("tar", ["-tv", "--numeric-owner", "--full-time"], { input: Buffer.concat(out.ready), encoding: "utf8", env: { ...process.env, TZ: "UTC" } });
    assert.match(r.stdout, /1969-12-31 23:58:20 old/);
  });

  it("refuses device numbers a tar header cannot hold (ETOOBIG)", async () => {
    const tree = new RootfsTree();
    tree.addDevice("/dev/odd", "char", 3_000_000, 1);
    await assert.rejects(writeTar(tree), (e) => isA3sError(e, "ETOOBIG"));
  });

  it("fails with ECONTENT when a host file changed size after it entered the tree", async () => {
    const dir = tempDir("a3s-tar-changed-");
    const host = join(dir, "f");
    writeFileSync(host, "12345");
    const tree = new RootfsTree();
    tree.addFile("/f", { type: "hostFile", path: host, size: 5 });
    truncateSync(host, 3);
    await assert.rejects(writeTar(tree), (e) => isA3sError(e, "ECONTENT"));
    writeFileSync(host, "1234567");
    await assert.rejects(writeTar(tree), (e) => isA3sError(e, "ECONTENT"));
  });

  it("gives the same bytes as a Readable (tarStream), into a Writable (writeTarStream) and as a file", async () => {
    const file = readFileSync(await writeTar(sample.tree));
    const fromReadable = await buffer(tarStream(sample.tree));
    assert.ok(fromReadable.equals(file));
    // writeTarStream into GNU tar's stdin, as the erofs output feeds mkfs.erofs.
    const child = spawn("tar", ["-tf", "-"], { stdio: ["pipe", "pipe", "inherit"] });
    const listing = buffer(child.stdout);
    await writeTarStream(sample.tree, child.stdin);
    const exit = await new Promise<number | null>((resolve) => child.on("close", resolve));
    assert.equal(exit, 0);
    assert.equal((await listing).toString().trimEnd().split("\n").length, sample.tree.entries().length);
    const sink = new PassThrough();
    const collected = buffer(sink);
    await writeTarStream(sample.tree, sink);
    assert.ok((await collected).equals(file));
  });

  it("fails with a clear error, and does not hang, when the output file cannot be created", async () => {
    const path = join(tempDir("a3s-tar-missing-"), "no-such-dir", "x.tar");
    await assert.rejects(tarOutput.write(sample.tree, { tmp: path, final: path }, quiet), (e) => isA3sError(e, "EWRITE") && /no-such-dir/.test(e.message));
  });

  it("produces only what the consumer reads (back-pressure), however large the files", async () => {
    const dir = tempDir("a3s-tar-bp-");
    const host = join(dir, "big");
    writeFileSync(host, Buffer.alloc(64 << 20, 7));
    const tree = new RootfsTree();
    for (let i = 0; i < 4; i++) tree.addFile(`/f${i}`, { type: "hostFile", path: host, size: 64 << 20 } satisfies ContentRef);
    const stream = tarStream(tree);
    const first = await new Promise<Buffer>((resolve) => stream.once("readable", () => resolve(stream.read() as Buffer)));
    await new Promise((r) => setImmediate(r));
    assert.ok(first.length > 0);
    assert.ok(stream.readableLength <= 4 << 20, `buffered ${stream.readableLength} bytes`);
    stream.destroy();
  });
});
