import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { isA3sError } from "../src/errors.js";
import { ChunkWriter } from "../src/formats/archive/index.js";
import { cpioOutput, tarOutput } from "../src/outputs/registry.js";
import { writeTarHeader, type TarHeaderFields } from "../src/formats/tar/index.js";
import { openArchiveTree, readArchiveTree } from "../src/formats/open-archive.js";
import type { RootfsTree } from "../src/tree/index.js";
import { imageDifferences } from "./helpers/image-compare.js";
import { expectedView, type ObservedEntry } from "./helpers/image-sample.js";
import { sampleTree } from "./helpers/sample-tree.js";
import { tempDir } from "./helpers/temp-dir.js";

const isRoot = process.getuid?.() === 0;
const quiet = { epoch: 0, warn: (): void => {} };
const INITRAMFS_DEVICES = ["/dev/console", "/dev/null"];

function withoutXattrs(view: Map<string, ObservedEntry>): Map<string, ObservedEntry> {
  for (const o of view.values()) delete o.xattrs;
  return view;
}

/** A tar built member by member, for inputs no honest writer produces. */
function craftTar(members: { h: Partial<TarHeaderFields> & { name: string }; data?: string }[]): Buffer {
  const out = new ChunkWriter();
  for (const { h, data = "" } of members) {
    writeTarHeader(out, { type: "0", mode: 0o644, uid: 0, gid: 0, mtime: 1, size: Buffer.byteLength(data), ...h });
    out.bytes(Buffer.from(data));
    out.zeros((512 - (Buffer.byteLength(data) % 512)) % 512);
  }
  out.zeros(1024);
  out.flush();
  return Buffer.concat(out.ready);
}

function file(name: string, bytes: Buffer): string {
  const path = join(tempDir("a3s-reader-"), name);
  writeFileSync(path, bytes);
  return path;
}

describe("archive reader", () => {
  const sample = sampleTree();
  after(() => sample.dispose());
  const dir = tempDir("a3s-reader-rt-");

  for (const name of ["r.tar", "r.tar.gz", "r.tar.zst", "r.cpio", "r.cpio.gz", "r.cpio.zst"]) {
    it(`reads back what the writer wrote: ${name}`, async () => {
      const path = join(dir, name);
      const writer = name.includes("cpio") ? cpioOutput : tarOutput;
      await writer.write(sample.tree, { tmp: path, final: path }, quiet);
      const opened = await openArchiveTree(path);
      try {
        assert.equal(opened.format, name.includes("cpio") ? "cpio" : "tar");
        assert.equal(opened.compression, name.endsWith(".gz") ? "gzip" : name.endsWith(".zst") ? "zstd" : "none");
        let got = await expectedView(opened.tree);
        let want = await expectedView(sample.tree);
        // cpio cannot hold xattrs, and the writer adds the kernel's console and null devices.
        if (name.includes("cpio")) [got, want] = [withoutXattrs(got), withoutXattrs(want)];
        assert.deepEqual(imageDifferences(got, want, { extra: name.includes("cpio") ? INITRAMFS_DEVICES : [] }), []);
        assert.equal(got.size, want.size + (name.includes("cpio") ? 2 : 0));
      } finally {
        await opened.dispose();
      }
    });
  }

  it("points file contents into an uncompressed archive instead of copying them", async () => {
    const path = join(dir, "blob.tar");
    await tarOutput.write(sample.tree, { tmp: path, final: path }, quiet);
    const tree = await readArchiveTree(path);
    const big = tree.lookup("/data/big.bin", false);
    assert.equal(big?.kind, "file");
    if (big?.kind === "file") {
      assert.equal(big.content.type, "blobRange");
      if (big.content.type === "blobRange") assert.equal(big.content.blobPath, path);
    }
  });

  it("removes the decompressed copy of a compressed archive on dispose", async () => {
    const path = join(dir, "d.tar.gz");
    await tarOutput.write(sample.tree, { tmp: path, final: path }, quiet);
    const opened = await openArchiveTree(path);
    const content = opened.tree.lookup("/data/big.bin", false);
    assert.ok(content?.kind === "file" && content.content.type === "blobRange");
    const copy = content.content.type === "blobRange" ? content.content.blobPath : "";
    assert.ok(existsSync(copy));
    await opened.dispose();
    assert.equal(existsSync(copy), false);
  });

  it("recognises the format by its bytes, not its name", async () => {
    const tarPath = join(dir, "named-wrongly.cpio");
    await tarOutput.write(sample.tree, { tmp: tarPath, final: join(dir, "x.tar.gz") }, quiet);
    const opened = await openArchiveTree(tarPath);
    assert.deepEqual([opened.format, opened.compression], ["tar", "gzip"]);
    await opened.dispose();
  });

  describe("archives made by GNU tar and GNU cpio", { skip: !isRoot && "extracting the sample with owners needs root" }, () => {
    const root = join(tempDir("a3s-reader-gnu-"), "root");
    const extracted = async (): Promise<string> => {
      if (!existsSync(root)) {
        const path = join(dir, "for-gnu.tar");
        await tarOutput.write(sample.tree, { tmp: path, final: path }, quiet);
        mkdirSync(root);
        execFileSync("tar", ["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", path, "-C", root], { stdio: "ignore" });
      }
      return root;
    };
    const compare = async (tree: RootfsTree, opts: { xattrs: boolean }): Promise<string[]> => {
      let got = await expectedView(tree);
      let want = await expectedView(sample.tree);
      if (!opts.xattrs) [got, want] = [withoutXattrs(got), withoutXattrs(want)];
      return imageDifferences(got, want);
    };

    it("reads GNU tar's POSIX format (PAX names, owners and xattrs)", async () => {
      const path = join(dir, "gnu-posix.tar");
      execFileSync("tar", ["--format=posix", "--xattrs", "--xattrs-include=*", "--numeric-owner", "--sort=name", "-cf", path, "-C", await extracted(), "."]);
      assert.deepEqual(await compare(await readArchiveTree(path), { xattrs: true }), []);
    });

    it("reads GNU tar's GNU format (long-name members, base-256 owners)", async () => {
      const path = join(dir, "gnu-gnu.tar");
      execFileSync("tar", ["--format=gnu", "--numeric-owner", "-cf", path, "-C", await extracted(), "."]);
      assert.deepEqual(await compare(await readArchiveTree(path), { xattrs: false }), []);
    });

    it("reads GNU cpio's newc archives (hardlink data on the last name)", async () => {
      const path = join(dir, "gnu.cpio");
      const src = await extracted();
      const names = execFileSync("find", ["."], { cwd: src, encoding: "utf8" });
      execFileSync("cpio", ["-o", "-H", "newc", "--quiet", "-O", path], { cwd: src, input: names });
      const got = withoutXattrs(await expectedView(await readArchiveTree(path)));
      const want = withoutXattrs(await expectedView(sample.tree));
      assert.deepEqual(imageDifferences(got, want), []);
    });
  });

  describe("hostile and corrupt input", () => {
    it("refuses a member that climbs above the root", async () => {
      const path = file("evil.tar", craftTar([{ h: { name: "ok" }, data: "fine" }, { h: { name: "../../evil" }, data: "x" }]));
      await assert.rejects(readArchiveTree(path), (e) => isA3sError(e, "EPATH") && e.subject === "../../evil");
      const inside = file("evil2.tar", craftTar([{ h: { name: "a/../../evil" }, data: "x" }]));
      await assert.rejects(readArchiveTree(inside), (e) => isA3sError(e, "EPATH"));
    });

    it("confines absolute names and symlinked parents to the tree", async () => {
      const path = file(
        "abs.tar",
        craftTar([
          { h: { name: "/abs" }, data: "absolute" },
          { h: { name: "escape", type: "2", linkName: "../../../../etc" } },
          { h: { name: "escape/passwd" }, data: "through the link" },
        ]),
      );
      const tree = await readArchiveTree(path);
      assert.deepEqual(
        tree.entries().map((e) => e.path),
        ["/", "/abs", "/escape", "/etc", "/etc/passwd"],
      );
      assert.equal(tree.lookup("/escape", false)?.kind, "symlink");
    });

    it("refuses a header whose checksum does not match", async () => {
      const bytes = craftTar([{ h: { name: "a" }, data: "x" }]);
      bytes[0] = 0x62; // "a" → "b" without fixing the checksum
      await assert.rejects(readArchiveTree(file("bad.tar", bytes)), (e) => isA3sError(e, "ECORRUPT") && /checksum/.test(e.message));
    });

    it("reads numeric fields and checksums in the forms tar writers use, and refuses any other", async () => {
      /** One member "a" of 5 bytes, with `mode` put as raw bytes in its field and the checksum stored as `sum` makes it. */
      const variant = (mode: string, sum: (n: number) => string, flip = false): Buffer => {
        const bytes = craftTar([{ h: { name: "a" }, data: "hello" }]);
        Buffer.from(mode.padEnd(8, "\0"), "latin1").copy(bytes, 100);
        if (flip) bytes[99] = 0xe9; // a byte above 127 in the name field's padding: signed and unsigned sums differ
        bytes.fill(0x20, 148, 156);
        let unsigned = 0;
        let signed = 0;
        for (let i = 0; i < 512; i++) {
          unsigned += bytes[i] as number;
          signed += (bytes[i] as number) > 127 ? (bytes[i] as number) - 256 : (bytes[i] as number);
        }
        Buffer.from(sum(flip ? signed : unsigned).padEnd(8, "\0"), "latin1").copy(bytes, 148);
        return bytes;
      };
      const modeOf = async (bytes: Buffer): Promise<number | undefined> => (await readArchiveTree(file("n.tar", bytes))).lookup("/a", false)?.mode;
      const octal = (n: number, w: number): string => n.toString(8).padStart(w, "0");
      // ustar and GNU: zero-padded, NUL-ended; old tars: space-padded with a trailing space; busybox: no padding.
      for (const mode of ["0000644\x00", "000644 \x00", "   644 ", "644", "\x00\x00644\x00\x00", " 644\x00 \x00"]) {
        for (const sum of [(n: number) => `${octal(n, 6)}\0 `, (n: number) => `${octal(n, 7)}\0`, (n: number) => ` ${octal(n, 6)} `, (n: number) => `${octal(n, 6)} `]) {
          assert.equal(await modeOf(variant(mode, sum)), 0o644, `mode ${JSON.stringify(mode)}, checksum ${JSON.stringify(sum(0))}`);
        }
      }
      // Summed with signed bytes, as some old tars did.
      assert.equal(await modeOf(variant("0000644\0", (n) => `${octal(n, 6)}\0 `, true)), 0o644);
      // A checksum in a form only parseInt reads (a leading tab) still matches.
      assert.equal(await modeOf(variant("0000644\0", (n) => `\t${octal(n, 6)}\0`)), 0o644);
      for (const mode of ["06 44\x00", "0000648\x00", "000644x\x00", "0000644\x01"]) {
        await assert.rejects(
          readArchiveTree(file("n.tar", variant(mode, (n) => `${octal(n, 6)}\0 `))),
          (e) => isA3sError(e, "ECORRUPT") && /invalid octal number/.test(e.message),
          JSON.stringify(mode),
        );
      }
    });

    it("refuses a truncated archive", async () => {
      const bytes = craftTar([{ h: { name: "a" }, data: "y".repeat(5000) }]);
      await assert.rejects(readArchiveTree(file("cut.tar", bytes.subarray(0, 2048))), (e) => isA3sError(e, "ECORRUPT") && /truncated/.test(e.message));
      const cpio = readFileSync(join(dir, "r.cpio"));
      await assert.rejects(readArchiveTree(file("cut.cpio", cpio.subarray(0, 20000))), (e) => isA3sError(e, "ECORRUPT"));
    });

    it("refuses a hardlink to a name the archive does not have", async () => {
      const path = file("link.tar", craftTar([{ h: { name: "b", type: "1", linkName: "missing" } }]));
      await assert.rejects(readArchiveTree(path), (e) => isA3sError(e, "ENOENT"));
    });

    it("refuses a malformed PAX record", async () => {
      const out = new ChunkWriter();
      const body = Buffer.from("99 path=x\n");
      writeTarHeader(out, { name: "PaxHeaders/a", type: "x", mode: 0o644, uid: 0, gid: 0, size: body.length, mtime: 0 });
      out.bytes(body);
      out.zeros(512 - body.length + 1024);
      out.flush();
      await assert.rejects(readArchiveTree(file("pax.tar", Buffer.concat(out.ready))), (e) => isA3sError(e, "ECORRUPT") && /PAX/.test(e.message));
    });

    it("refuses files that are not tar or cpio, and other compressors, by name", async () => {
      await assert.rejects(readArchiveTree(file("text.tar", Buffer.from("hello world\n".repeat(100)))), (e) => isA3sError(e, "EFORMAT"));
      const xz = Buffer.concat([Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), Buffer.alloc(100)]);
      await assert.rejects(readArchiveTree(file("a.tar.xz", xz)), (e) => isA3sError(e, "EUNSUPPORTED") && /xz/.test(e.message));
      const odc = Buffer.from("070707" + "0".repeat(200));
      await assert.rejects(readArchiveTree(file("odc.cpio", odc)), (e) => isA3sError(e, "EUNSUPPORTED") && /newc/.test(e.message));
      await assert.rejects(readArchiveTree(file("bad.gz", Buffer.from([0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8]))), (e) => isA3sError(e, "ECORRUPT"));
    });

    it("stops a decompression bomb at the size limit", async () => {
      const bomb = gzipSync(craftTar([{ h: { name: "zeros" }, data: "\0".repeat(4 << 20) }]));
      assert.ok(bomb.length < 16_384);
      await assert.rejects(readArchiveTree(file("bomb.tar.gz", bomb), { maxDecompressedBytes: 1 << 20 }), (e) => isA3sError(e, "ELIMIT"));
    });

    it("stops at the member count limit", async () => {
      const many = craftTar(Array.from({ length: 20 }, (_, i) => ({ h: { name: `f${i}` } })));
      await assert.rejects(readArchiveTree(file("many.tar", many), { maxEntries: 10 }), (e) => isA3sError(e, "ELIMIT"));
      assert.equal((await readArchiveTree(file("many.tar", many), { maxEntries: 20 })).entries().length, 21);
    });
  });
});
