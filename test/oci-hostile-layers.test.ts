import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { RootfsBuilder } from "../src/builder/rootfs-builder.js";
import { isA3sError } from "../src/errors.js";
import { ContentStore } from "../src/oci/store/content-store.js";
import { imageToTree } from "../src/oci/layers/image-to-tree.js";
import { applyLayer } from "../src/oci/layers/layer-apply.js";
import { dirOutput } from "../src/outputs/registry.js";
import type { RootfsSource } from "../src/sources/source.js";
import { readContent, type RootfsTree } from "../src/tree/index.js";
import { applyLayers, rawLayer, resolvedImage } from "./helpers/layer-image.js";
import { gnuLong, member, pax, paxRaw, raw, tar } from "./helpers/raw-tar.js";
import { tempDir } from "./helpers/temp-dir.js";
import { makeImage, type TestLayer } from "./helpers/test-image.js";

/**
 * A place on the host with sentinel files beside the directory an output is
 * written to. A hostile layer is applied, the result (if accepted) written as
 * a `dir` output, and everything outside the target must be byte-for-byte,
 * mode-for-mode and link-count-for-link-count what it was.
 */
class Arena {
  readonly root = tempDir("a3s-hostile-");
  readonly outside = join(this.root, "outside");
  readonly target = join(this.root, "target");

  constructor() {
    mkdirSync(join(this.outside, "etc"), { recursive: true, mode: 0o755 });
    writeFileSync(join(this.outside, "etc", "passwd"), "sentinel: root:x:0:0\n", { mode: 0o644 });
    writeFileSync(join(this.outside, "secret"), "do not touch\n", { mode: 0o600 });
    symlinkSync(join(this.outside, "etc"), join(this.outside, "etc-link"));
  }

  /** Every name outside the target, with what identifies its state. */
  snapshot(): string[] {
    const out: string[] = [];
    const visit = (p: string): void => {
      const st = lstatSync(p);
      let what = `${p} mode=${st.mode.toString(8)} uid=${st.uid} gid=${st.gid} nlink=${st.nlink} mtime=${st.mtimeMs}`;
      if (st.isFile()) what += ` sha=${createHash("sha256").update(readFileSync(p)).digest("hex")}`;
      if (st.isSymbolicLink()) what += ` -> ${readlinkSync(p)}`;
      out.push(what);
      if (st.isDirectory()) for (const n of readdirSync(p).sort()) if (join(p, n) !== this.target) visit(join(p, n));
    };
    visit(this.outside);
    for (const n of readdirSync(this.root).sort()) if (n !== "outside" && n !== "target" && !n.endsWith(".a3s-metadata.json")) out.push(`extra: ${n}`);
    return out;
  }

  /** Applies the layers; if accepted, writes the tree as a dir and checks nothing outside changed. */
  async apply(layers: TestLayer[]): Promise<RootfsTree> {
    const before = this.snapshot();
    const { tree } = await applyLayers(layers);
    assertConfined(tree);
    // The writer leaves publishing to its caller: its companion (the metadata sidecar) is renamed in here.
    const written = await dirOutput.write(tree, { tmp: this.target, final: this.target }, { epoch: 0, warn: () => {} });
    for (const c of written?.companions ?? []) renameSync(c.tmp, c.final);
    assert.deepEqual(this.snapshot(), before, "nothing outside the target changed");
    return tree;
  }

  /** Expects the layers to be refused with `code`, writing nothing anywhere. */
  async refuse(layers: TestLayer[], code: string, pattern?: RegExp): Promise<void> {
    const before = this.snapshot();
    await assert.rejects(applyLayers(layers), (e) => {
      assert.ok(isA3sError(e), `an A3sError, not ${String(e)}`);
      assert.equal(e.code, code, e.message);
      if (pattern) assert.match(e.message, pattern);
      return true;
    });
    assert.deepEqual(this.snapshot(), before);
    assert.equal(existsSync(this.target), false);
  }
}

/** Every entry's path is canonical: absolute, no empty, "." or ".." component. */
function assertConfined(tree: RootfsTree): void {
  for (const e of tree.entries()) {
    assert.ok(e.path === "/" || /^(\/[^/]+)+$/.test(e.path), e.path);
    assert.ok(!e.path.split("/").some((p) => p === "." || p === ".."), e.path);
    assert.ok(!e.path.includes(".wh."), `no whiteout survives: ${e.path}`);
  }
}

async function text(tree: RootfsTree, path: string): Promise<string> {
  const inode = tree.lookup(path, false);
  assert.equal(inode?.kind, "file", path);
  return (await readContent(inode.content, path)).toString();
}

function layer(...members: Buffer[]): TestLayer {
  return rawLayer(tar(...members), "none");
}

describe("hostile layers", () => {
  describe("names", () => {
    it("refuses '..' in names and in hardlink targets", async () => {
      const a = new Arena();
      for (const name of ["../evil", "a/../../evil", "a/../b", "./../x"]) {
        await a.refuse([layer(raw.file(name, "x"))], "EPATH", /path traversal/);
      }
      await a.refuse([layer(raw.file("a", "a"), raw.hardlink("b", "../../a"))], "EPATH", /path traversal/);
    });

    it("puts absolute names inside the rootfs", async () => {
      const a = new Arena();
      const tree = await a.apply([layer(raw.file(`${a.outside}/secret`, "overwritten?"), raw.file("/abs", "abs"))]);
      assert.equal(await text(tree, `${a.outside}/secret`), "overwritten?");
      assert.equal(readFileSync(join(a.target, a.outside, "secret"), "utf8"), "overwritten?");
      assert.equal(readFileSync(join(a.outside, "secret"), "utf8"), "do not touch\n");
    });

    it("refuses names and resolved paths longer than Linux allows (deep-path DoS)", async () => {
      const a = new Arena();
      await a.refuse([layer(pax({ path: "a/".repeat(2100) + "f" }), raw.file("placeholder", "x"))], "ECORRUPT", /PATH_MAX/);
      await a.refuse([layer(pax({ path: "x".repeat(256) }), raw.file("placeholder", "x"))], "EPATH", /255/);
      // Two names within PATH_MAX grafted by a symlink into one path beyond it
      // (300 levels each, well inside the tree's depth bound).
      const deep = "dddddddddd/".repeat(300);
      await a.refuse(
        [
          layer(
            pax({ path: deep }),
            raw.dir("placeholder/"),
            pax({ linkpath: "/" + deep }),
            raw.symlink("s", "placeholder"),
            pax({ path: "s/" + "eeeeeeeeee/".repeat(300) + "f" }),
            raw.file("placeholder", "x"),
          ),
        ],
        "EPATH",
        /longer than PATH_MAX/,
      );
    });
  });

  describe("symlinks", () => {
    it("confines symlinked parents of the same layer to the tree", async () => {
      const a = new Arena();
      const tree = await a.apply([
        layer(
          raw.symlink("abs", `${a.outside}/etc`),
          raw.file("abs/passwd", "via absolute link"),
          raw.symlink("rel", "../../../../../../../../.."),
          raw.file("rel/rel-file", "via relative link"),
        ),
      ]);
      assert.equal(await text(tree, `${a.outside}/etc/passwd`), "via absolute link");
      assert.equal(await text(tree, "/rel-file"), "via relative link");
      assert.equal(tree.lookup("/abs", false)?.kind, "symlink");
    });

    it("confines symlinked parents of lower layers to the tree", async () => {
      const a = new Arena();
      const tree = await a.apply([
        layer(raw.symlink("etc", `${a.outside}/etc`), raw.symlink("up", "..")),
        layer(raw.file("etc/passwd", "lower link"), raw.file("up/up/up/top", "top")),
      ]);
      assert.equal(await text(tree, `${a.outside}/etc/passwd`), "lower link");
      assert.equal(await text(tree, "/top"), "top");
    });

    it("resolves every entry afresh when a directory is replaced by a symlink midway through a layer", async () => {
      const a = new Arena();
      const tree = await a.apply([
        layer(
          raw.dir("d/"),
          raw.file("d/before", "in the directory"),
          raw.symlink("d", `${a.outside}/etc`),
          raw.file("d/after", "through the link"),
        ),
      ]);
      assert.equal(tree.lookup("/d", false)?.kind, "symlink");
      assert.equal(await text(tree, `${a.outside}/etc/after`), "through the link");
      assert.equal(tree.lookup(`${a.outside}/etc/before`), undefined);
    });

    it("replaces a final symlink instead of writing through it", async () => {
      const a = new Arena();
      const tree = await a.apply([
        layer(raw.file(`${a.outside}/etc/passwd`, "in-tree original"), raw.symlink("passwd", `${a.outside}/etc/passwd`)),
        layer(raw.file("passwd", "replacement")),
      ]);
      assert.equal(await text(tree, "/passwd"), "replacement");
      assert.equal(await text(tree, `${a.outside}/etc/passwd`), "in-tree original");
    });

    it("puts a directory over a symlink without touching the link's target", async () => {
      const a = new Arena();
      const tree = await a.apply([
        layer(raw.dir("real/", { mode: 0o755, uid: 0, mtime: 100 }), raw.symlink("d", "/real"), raw.symlink("h", `${a.outside}/etc`)),
        layer(raw.dir("d/", { mode: 0o700, uid: 1000, gid: 1000, mtime: 200 }), raw.dir("h/", { mode: 0o777, uid: 4242 })),
      ]);
      const real = tree.lookup("/real");
      assert.ok(real?.kind === "directory" && real.mode === 0o755 && real.uid === 0 && real.mtime === 100);
      const d = tree.lookup("/d", false);
      assert.ok(d?.kind === "directory" && d.mode === 0o700 && d.uid === 1000);
      assert.equal(tree.lookup("/h", false)?.kind, "directory");
    });

    it("refuses to turn the root into a symlink or a file", async () => {
      const a = new Arena();
      for (const name of ["./", ".", "/", ""]) {
        await a.refuse([layer(raw.symlink(name, a.outside))], "EPERM", /root/);
      }
      await a.refuse([layer(raw.file(".", "x"))], "EPERM", /root/);
      const tree = await a.apply([layer(raw.dir("./", { mode: 0o700 }))]);
      assert.equal(tree.root.mode, 0o700);
    });

    it("stops link loops and a 300-link chain with ELOOP, and follows a 200-link chain", async () => {
      const a = new Arena();
      await a.refuse([layer(raw.symlink("x", "y"), raw.symlink("y", "x"), raw.file("x/f", "f"))], "ELOOP");
      await a.refuse([layer(raw.symlink("self", "self/self"), raw.file("self/f", "f"))], "ELOOP");
      const chain = (n: number): Buffer[] => [
        raw.dir("end/"),
        ...Array.from({ length: n }, (_, i) => raw.symlink(`l${i}`, i === n - 1 ? "end" : `l${i + 1}`)),
        raw.file("l0/f", "chained"),
      ];
      await a.refuse([layer(...chain(300))], "ELOOP");
      const tree = await a.apply([layer(...chain(200))]);
      assert.equal(await text(tree, "/end/f"), "chained");
    });
  });

  describe("whiteouts", () => {
    it("refuses .wh., .wh.. and .wh... as errors, never deleting a parent", async () => {
      const { tree } = await applyLayers([layer(raw.file("dir/keep", "k"), raw.file("other", "o"))]);
      for (const bad of ["dir/.wh.", "dir/.wh..", "dir/.wh...", ".wh..wh..opq/x", "dir/.wh.x/y"]) {
        const file = join(tempDir("a3s-wh-"), "layer.tar");
        writeFileSync(file, tar(raw.file(bad)));
        await assert.rejects(applyLayer(tree, { path: file }, { subject: "upper", maxEntries: 100 }), (e) => isA3sError(e, "EPATH") && /whiteout/.test(e.message));
        assert.equal(await text(tree, "/dir/keep"), "k");
        assert.equal(await text(tree, "/other"), "o");
      }
    });

    it("removes nothing through a symlinked parent, and never a final symlink's target", async () => {
      const a = new Arena();
      const tree = await a.apply([
        layer(
          raw.file("etc/passwd", "kept"),
          raw.file("usr/bin/x", "kept"),
          raw.symlink("link", "/etc"),
          raw.symlink("usrlink", "/usr"),
          raw.symlink("hostlink", `${a.outside}/etc`),
          raw.symlink("final", "/etc/passwd"),
        ),
        layer(
          raw.file("link/.wh.passwd"),
          raw.file("usrlink/.wh..wh..opq"),
          raw.file("hostlink/.wh.passwd"),
          raw.file(".wh.final"),
        ),
      ]);
      assert.equal(await text(tree, "/etc/passwd"), "kept");
      assert.equal(await text(tree, "/usr/bin/x"), "kept");
      assert.equal(tree.lookup("/link", false)?.kind, "symlink");
      assert.equal(tree.lookup("/usrlink", false)?.kind, "symlink");
      assert.equal(tree.lookup("/final", false), undefined);
    });

    it("makes a symlink-replacing opaque directory fresh, leaving the old link's target alone", async () => {
      const tree = (
        await applyLayers([
          layer(raw.file("usr/bin/x", "kept"), raw.symlink("bin", "usr/bin")),
          layer(raw.dir("bin/"), raw.file("bin/.wh..wh..opq"), raw.file("bin/new", "n")),
        ])
      ).tree;
      assert.deepEqual(
        tree.entries().map((e) => e.path).filter((p) => p.startsWith("/bin") || p.startsWith("/usr")),
        ["/bin", "/bin/new", "/usr", "/usr/bin", "/usr/bin/x"],
      );
    });
  });

  describe("hardlinks", () => {
    it("refuses hardlinks out of the root, and keeps those through symlinks inside it", async () => {
      const a = new Arena();
      await a.refuse([layer(raw.hardlink("h", "../../../etc/passwd"))], "EPATH");
      await a.refuse([layer(raw.hardlink("h", `${a.outside}/secret`))], "ENOENT");
      await a.refuse([layer(raw.symlink("out", `${a.outside}/etc`), raw.hardlink("h", "out/passwd"))], "ENOENT");
      await a.refuse([layer(raw.dir("d/"), raw.hardlink("h", "d"))], "EPERM");
      await a.refuse([layer(raw.file("f", "f"), raw.hardlink("h", "f/.wh.x"))], "EPATH", /whiteout/);
      const tree = await a.apply([
        layer(raw.file("etc/passwd", "tree passwd"), raw.symlink("via", "/etc"), raw.hardlink("h1", "via/passwd"), raw.hardlink("h2", "/etc/passwd")),
      ]);
      assert.equal(tree.lookup("/h1"), tree.lookup("/etc/passwd"));
      assert.equal(tree.lookup("/h2"), tree.lookup("/etc/passwd"));
      assert.equal(lstatSync(join(a.target, "h1")).ino, lstatSync(join(a.target, "etc/passwd")).ino);
    });
  });

  describe("tar structure", () => {
    it("refuses PAX/GNU header desync", async () => {
      const a = new Arena();
      // A PAX size that disagrees with the header: readers that trust one or the other see different members.
      await a.refuse([layer(pax({ size: "512" }), member({ name: "f", size: 1024 }, Buffer.alloc(1024)))], "ECORRUPT", /contradicts/);
      await a.refuse([layer(pax({ path: "a" }), pax({ path: "b" }), raw.file("f", "x"))], "ECORRUPT", /two 'x'/);
      await a.refuse([layer(gnuLong("long-a"), gnuLong("long-b"), raw.file("f", "x"))], "ECORRUPT", /two 'L'/);
      await a.refuse([layer(gnuLong("gnu-name"), pax({ path: "pax-name" }), raw.file("f", "x"))], "ECORRUPT", /given twice/);
      await a.refuse([layer(raw.file("ok", "x"), pax({ path: "dangling" }))], "ECORRUPT", /not followed by a member/);
    });

    it("refuses header-only entries that claim a size (hidden members)", async () => {
      const a = new Arena();
      const hidden = tar(raw.file("smuggled", "payload"));
      for (const type of ["1", "2", "3", "4", "5", "6"]) {
        await a.refuse([layer(member({ name: "h", type, linkName: "x", size: hidden.length }, hidden))], "ECORRUPT", /header-only/);
      }
    });

    it("refuses huge and malformed PAX records", async () => {
      const a = new Arena();
      await a.refuse([layer(pax({ comment: "x".repeat(2 << 20) }), raw.file("f", "x"))], "ECORRUPT", /too large/);
      await a.refuse([layer(paxRaw("999999 path=x\n"), raw.file("f", "x"))], "ECORRUPT", /PAX/);
      await a.refuse([layer(paxRaw("+12 path=x\n"), raw.file("f", "x"))], "ECORRUPT", /PAX/);
      await a.refuse([layer(pax({ "GNU.sparse.size": "10" }), raw.file("f", "x"))], "EUNSUPPORTED", /sparse/);
    });

    it("refuses truncated and corrupt tar, gzip and zstd", async () => {
      const a = new Arena();
      const good = tar(raw.file("f", "y".repeat(5000)), raw.file("g", "z"));
      const cut = good.subarray(0, 2048);
      await a.refuse([rawLayer(cut, "none")], "ECORRUPT", /truncated/);
      await a.refuse([rawLayer(good.subarray(0, 700), "none")], "ECORRUPT", /truncated/);
      const badSum = Buffer.from(good);
      badSum[3] = (badSum[3] as number) ^ 1;
      await a.refuse([rawLayer(badSum, "none")], "ECORRUPT", /checksum/);

      const gz = gzipSync(good);
      const truncatedGz = { ...rawLayer(good, "gzip"), ...blob(gz.subarray(0, gz.length - 20)) };
      await a.refuse([truncatedGz], "ECORRUPT", /gzip/);
      const flipped = Buffer.from(gz);
      flipped[gz.length >> 1] = (flipped[gz.length >> 1] as number) ^ 0xff;
      await a.refuse([{ ...rawLayer(good, "gzip"), ...blob(flipped) }], "ECORRUPT", /gzip/);

      const zst = execFileSync("zstd", ["-q", "-c", "--check"], { input: good });
      await a.refuse([{ ...rawLayer(good, "zstd"), ...blob(zst.subarray(0, zst.length - 9)) }], "ECORRUPT", /zstd/);
      const zflip = Buffer.from(zst);
      zflip[zst.length >> 1] = (zflip[zst.length >> 1] as number) ^ 0xff;
      // fzstd does not check the frame checksum; a flipped byte then shows as a diff_id mismatch.
      await assert.rejects(applyLayers([{ ...rawLayer(good, "zstd"), ...blob(zflip) }]), (e) => isA3sError(e) && ["ECORRUPT", "EDIGEST"].includes(e.code));
      const garbage = Buffer.concat([zst, Buffer.from("trailing garbage")]);
      await a.refuse([{ ...rawLayer(good, "zstd"), ...blob(garbage) }], "ECORRUPT", /zstd/);
    });

    it("lets the last of duplicate entries win", async () => {
      const a = new Arena();
      const tree = await a.apply([
        layer(
          raw.file("f", "first"),
          raw.file("f", "second"),
          raw.dir("d/", { mode: 0o755 }),
          raw.file("d/child", "c"),
          raw.dir("d/", { mode: 0o700 }),
          raw.file("x", "file"),
          raw.dir("x/"),
          raw.symlink("x", "f"),
        ),
      ]);
      assert.equal(await text(tree, "/f"), "second");
      assert.equal(tree.lookup("/d")?.mode, 0o700);
      assert.equal(await text(tree, "/d/child"), "c");
      assert.equal(tree.lookup("/x", false)?.kind, "symlink");
    });
  });

  describe("bombs", () => {
    it("stops gzip and zstd decompression bombs at the byte cap", async () => {
      const zeros = tar(raw.file("zeros", Buffer.alloc(64 << 20)));
      const gz = rawLayer(zeros, "gzip");
      assert.ok(gz.size < 200_000);
      await assert.rejects(applyLayers([gz], { limits: { maxLayerBytes: 1 << 20 } }), (e) => isA3sError(e, "ELIMIT") && /maxLayerBytes/.test(e.message));
      const zst = rawLayer(zeros, "zstd");
      await assert.rejects(applyLayers([zst], { limits: { maxLayerBytes: 1 << 20 } }), (e) => isA3sError(e, "ELIMIT"));
      await assert.rejects(applyLayers([gz, zst], { limits: { maxImageBytes: 100 << 20 } }), (e) => isA3sError(e, "ELIMIT") && /maxImageBytes/.test(e.message));
    });

    it("stops a zstd frame that asks for a huge window before allocating it", async () => {
      // Frame header: magic, single-segment with an 8-byte content size of 1 TiB, then one RLE block.
      const fh = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xe0, 0, 0, 0, 0, 0, 1, 0, 0]);
      const rle = Buffer.from([0x03, 0x00, 0x10, 0x00]);
      const bomb = Buffer.concat([fh, rle]);
      const l = { ...rawLayer(tar(raw.file("f", "x")), "zstd"), ...blob(bomb) };
      await assert.rejects(applyLayers([l]), (e) => isA3sError(e, "ELIMIT") && /window/.test(e.message));
    });

    it("stops at the entry cap, across layers", async () => {
      const many = layer(...Array.from({ length: 50 }, (_, i) => raw.file(`f${i}`, "")));
      await assert.rejects(applyLayers([many], { limits: { maxEntries: 10 } }), (e) => isA3sError(e, "ELIMIT"));
      await assert.rejects(applyLayers([many, many], { limits: { maxEntries: 80 } }), (e) => isA3sError(e, "ELIMIT"));
      assert.equal((await applyLayers([many, many], { limits: { maxEntries: 100 } })).tree.entryCount, 51);
    });
  });

  it("publishes nothing when a layer is refused", async () => {
    const root = tempDir("a3s-hostile-build-");
    const out = join(root, "rootfs");
    const store = new ContentStore(join(root, "store"));
    const image = resolvedImage(makeImage([layer(raw.file("ok", "fine")), layer(raw.file("../escape", "x"))]));
    const source: RootfsSource = {
      spec: "test-image",
      providesAgent: true,
      load: async (ctx) => imageToTree(image, { epoch: ctx.epoch, store, progress: ctx.progress }),
    };
    await assert.rejects(new RootfsBuilder(out).withSource(source).build(), (e) => isA3sError(e, "EPATH"));
    assert.deepEqual(readdirSync(root).sort(), ["store"]);
  });
});

/** Digest and size fields for replacement blob bytes (a layer whose diff_id stays that of the good tar). */
function blob(bytes: Buffer): { bytes: Buffer; digest: string; size: number } {
  return { bytes, digest: `sha256:${createHash("sha256").update(bytes).digest("hex")}`, size: bytes.length };
}



