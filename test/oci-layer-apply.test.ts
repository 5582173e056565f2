import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { isA3sError } from "../src/errors.js";
import { ContentStore } from "../src/oci/store/content-store.js";
import { parseImageConfig } from "../src/oci/image-config.js";
import { imageToTree } from "../src/oci/layers/image-to-tree.js";
import type { ResolvedImage } from "../src/oci/image.js";
import {
  DOCKER_LAYER_GZIP,
  DOCKER_LAYER_TAR,
  DOCKER_LAYER_ZSTD,
  OCI_LAYER_GZIP,
  OCI_LAYER_TAR,
  OCI_LAYER_ZSTD,
} from "../src/oci/media-types.js";
import { cpioOutput, ext4Output, tarOutput } from "../src/outputs/registry.js";
import { readContent, type RootfsTree } from "../src/tree/index.js";
import { observeDirectory } from "./helpers/extracted-tree.js";
import { imageDifferences } from "./helpers/image-compare.js";
import { readExt4 } from "./helpers/image-readers.js";
import { CAP_NET_RAW, expectedView, type ObservedEntry } from "./helpers/image-sample.js";
import { applyLayers, rawLayer, resolvedImage } from "./helpers/layer-image.js";
import { pax, raw, tar } from "./helpers/raw-tar.js";
import { tempDir } from "./helpers/temp-dir.js";
import { makeImage } from "./helpers/test-image.js";

const isRoot = process.getuid?.() === 0;

async function text(tree: RootfsTree, path: string): Promise<string> {
  const inode = tree.lookup(path, false);
  assert.equal(inode?.kind, "file", `${path} is a file`);
  return (await readContent(inode.content, path)).toString();
}

function paths(tree: RootfsTree): string[] {
  return tree.entries().map((e) => e.path);
}

/** Names that share an inode, as sorted groups: what "inode identity" means for every reader. */
function linkGroups(view: ReadonlyMap<string, ObservedEntry>): string[] {
  const byId = new Map<string, string[]>();
  for (const [path, o] of view) if (o.kind !== "directory") byId.set(o.identity, [...(byId.get(o.identity) ?? []), path]);
  return [...byId.values()].filter((g) => g.length > 1).map((g) => g.sort().join(" = ")).sort();
}

const baseTar = tar(
  raw.dir("etc/"),
  raw.file("etc/hostname", "box\n"),
  raw.symlink("etc/localtime", "/usr/share/zoneinfo/UTC"),
  raw.file("bin/tool", "#!tool\n", { mode: 0o755 }),
);

describe("OCI layer application", () => {
  describe("media types", () => {
    const cases: [string, "none" | "gzip" | "zstd", string][] = [
      ["OCI tar", "none", OCI_LAYER_TAR],
      ["OCI tar+gzip", "gzip", OCI_LAYER_GZIP],
      ["OCI tar+zstd", "zstd", OCI_LAYER_ZSTD],
      ["Docker tar", "none", DOCKER_LAYER_TAR],
      ["Docker tar.gzip", "gzip", DOCKER_LAYER_GZIP],
      ["Docker tar.zstd", "zstd", DOCKER_LAYER_ZSTD],
      ["gzip labelled as plain tar (found by magic bytes)", "gzip", OCI_LAYER_TAR],
      ["zstd labelled as gzip (found by magic bytes)", "zstd", DOCKER_LAYER_GZIP],
      ["gzip under an unknown media type", "gzip", "application/octet-stream"],
    ];
    for (const [name, compression, mediaType] of cases) {
      it(`applies ${name}`, async () => {
        const { tree } = await applyLayers([rawLayer(baseTar, compression, mediaType)]);
        assert.deepEqual(paths(tree), ["/", "/bin", "/bin/tool", "/etc", "/etc/hostname", "/etc/localtime"]);
        assert.equal(await text(tree, "/etc/hostname"), "box\n");
        assert.equal(tree.lookup("/bin/tool")?.mode, 0o755);
      });
    }

    it("refuses a layer declared compressed whose bytes are not, and names xz", async () => {
      await assert.rejects(applyLayers([rawLayer(baseTar, "none", OCI_LAYER_GZIP)]), (e) => isA3sError(e, "ECORRUPT") && /not gzip/.test(e.message));
      // The xz magic bytes are enough: the refusal comes before any decompression.
      const xz = Buffer.concat([Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), baseTar]);
      const layer = { ...rawLayer(xz, "none", "application/vnd.oci.image.layer.v1.tar+xz"), diffId: rawLayer(baseTar, "none").diffId };
      await assert.rejects(applyLayers([layer]), (e) => isA3sError(e, "EUNSUPPORTED") && /xz/.test(e.message));
    });
  });

  describe("whiteouts", () => {
    const lower = rawLayer(
      tar(
        raw.file("a/x", "x"),
        raw.file("a/y", "y"),
        raw.dir("b/"),
        raw.file("b/deep/z", "z"),
        raw.file("c", "lower c"),
        raw.file("keep", "keep"),
        raw.dir("d/"),
        raw.file("d/old1", "1"),
        raw.file("d/sub/old2", "2"),
      ),
    );

    it("hides a lower file or a whole lower directory, and nothing else", async () => {
      const upper = rawLayer(tar(raw.file("a/.wh.x"), raw.file(".wh.b"), raw.file(".wh.missing")));
      const { tree } = await applyLayers([lower, upper]);
      assert.equal(tree.lookup("/a/x"), undefined);
      assert.equal(await text(tree, "/a/y"), "y");
      assert.equal(tree.lookup("/b"), undefined);
      assert.equal(await text(tree, "/keep"), "keep");
      assert.ok(paths(tree).every((p) => !p.includes(".wh.")), "no whiteout file survives");
    });

    it("hides only lower layers: an entry of the same layer survives its whiteout, before or after it", async () => {
      const after = rawLayer(tar(raw.file("c", "upper c"), raw.file(".wh.c")));
      const before = rawLayer(tar(raw.file(".wh.c"), raw.file("c", "upper c")));
      for (const upper of [after, before]) {
        const { tree } = await applyLayers([lower, upper]);
        assert.equal(await text(tree, "/c"), "upper c");
      }
      // A whiteout of a directory the same layer recreates: the lower children are gone, the new ones stay.
      const redo = rawLayer(tar(raw.dir("b/"), raw.file("b/new", "n"), raw.file(".wh.b")));
      const { tree } = await applyLayers([lower, redo]);
      assert.deepEqual(paths(tree).filter((p) => p.startsWith("/b")), ["/b", "/b/new"]);
    });

    it("makes a directory opaque as if the marker came first in its layer", async () => {
      // new1 comes before the marker in the tar and must survive it.
      const upper = rawLayer(
        tar(raw.dir("d/", { mode: 0o700 }), raw.file("d/new1", "n1"), raw.file("d/.wh..wh..opq"), raw.file("d/new2", "n2")),
      );
      const { tree } = await applyLayers([lower, upper]);
      assert.deepEqual(paths(tree).filter((p) => p.startsWith("/d")), ["/d", "/d/new1", "/d/new2"]);
      assert.equal(tree.lookup("/d")?.mode, 0o700);
      assert.ok(paths(tree).every((p) => !p.includes(".wh.")));
    });

    it("skips AUFS metadata (.wh..wh.plnk) as Docker does, leaving no trace", async () => {
      const upper = rawLayer(tar(raw.dir(".wh..wh.plnk/"), raw.file(".wh..wh.plnk/123.456", "x"), raw.file("new", "n")));
      const { tree } = await applyLayers([lower, upper]);
      assert.ok(paths(tree).includes("/new"));
      assert.ok(paths(tree).every((p) => !p.includes(".wh.")));
    });
  });

  describe("hardlinks, devices, fifos, xattrs, setuid and capabilities", () => {
    const lower = rawLayer(tar(raw.file("bin/tool", "#!tool\n", { mode: 0o4755 }), raw.file("etc/shared", "shared\n")));
    const upper = rawLayer(
      tar(
        raw.hardlink("usr/bin/tool-alias", "bin/tool"), // to a file of a lower layer
        raw.file("etc/a", "a\n"),
        raw.hardlink("etc/b", "etc/a"),
        raw.hardlink("etc/c", "/etc/a"),
        pax({ "SCHILY.xattr.security.capability": CAP_NET_RAW, "SCHILY.xattr.user.note": "hello" }),
        raw.file("usr/bin/ping", "ping\n", { mode: 0o755 }),
        raw.dir("srv/", { mode: 0o2775, uid: 1000, gid: 1000 }),
        raw.device("dev/null", "char", 1, 3, { mode: 0o666 }),
        raw.device("dev/sda", "block", 8, 0, { mode: 0o660, gid: 6 }),
        raw.fifo("run/initctl", { mode: 0o600 }),
      ),
    );

    it("keeps them all in the tree, hardlinks as one inode even across layers", async () => {
      const { tree } = await applyLayers([lower, upper]);
      assert.equal(tree.lookup("/usr/bin/tool-alias"), tree.lookup("/bin/tool"));
      assert.equal(tree.lookup("/etc/b"), tree.lookup("/etc/a"));
      assert.equal(tree.lookup("/etc/c"), tree.lookup("/etc/a"));
      assert.equal(tree.lookup("/bin/tool")?.mode, 0o4755);
      const ping = tree.lookup("/usr/bin/ping");
      assert.deepEqual(Buffer.from(ping?.xattrs.get("security.capability") ?? []), CAP_NET_RAW);
      assert.equal(Buffer.from(ping?.xattrs.get("user.note") ?? []).toString(), "hello");
      assert.equal(tree.lookup("/srv")?.mode, 0o2775);
      const nul = tree.lookup("/dev/null");
      assert.ok(nul?.kind === "char" && nul.major === 1 && nul.minor === 3 && nul.mode === 0o666);
      const sda = tree.lookup("/dev/sda");
      assert.ok(sda?.kind === "block" && sda.major === 8 && sda.minor === 0 && sda.gid === 6);
      assert.equal(tree.lookup("/run/initctl")?.kind, "fifo");
    });

    it("keeps inode identity, modes, devices and xattrs through tar (GNU tar), cpio (GNU cpio) and ext4 (debugfs)", { skip: !isRoot && "extraction with owners and devices needs root" }, async () => {
      const { tree } = await applyLayers([lower, upper]);
      const want = await expectedView(tree);
      const wantLinks = linkGroups(want);
      assert.deepEqual(wantLinks, ["/bin/tool = /usr/bin/tool-alias", "/etc/a = /etc/b = /etc/c"]);
      const work = tempDir("a3s-layer-out-");
      const quiet = { epoch: 0, warn: (): void => {} };

      const tarPath = join(work, "r.tar");
      await tarOutput.write(tree, { tmp: tarPath, final: tarPath }, quiet);
      const tarDir = join(work, "tar-x");
      mkdirSync(tarDir);
      execFileSync("tar", ["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", tarPath, "-C", tarDir]);
      const fromTar = observeDirectory(tarDir, { xattrs: true });
      assert.deepEqual(linkGroups(fromTar), wantLinks);
      const files = (m: Map<string, ObservedEntry>): Map<string, ObservedEntry> =>
        new Map([...m].filter(([, o]) => o.kind !== "directory" || o.mode !== 0o755));
      assert.deepEqual(
        imageDifferences(files(fromTar), files(want)).filter((d) => !/ mtime:/.test(d)),
        [],
      );

      const cpioPath = join(work, "r.cpio");
      await cpioOutput.write(tree, { tmp: cpioPath, final: cpioPath }, quiet);
      const cpioDir = join(work, "cpio-x");
      mkdirSync(cpioDir);
      execFileSync("cpio", ["-idm", "--no-absolute-filenames", "--quiet", "-F", cpioPath], { cwd: cpioDir });
      const fromCpio = observeDirectory(cpioDir, { xattrs: false });
      assert.deepEqual(
        linkGroups(fromCpio).filter((g) => !g.startsWith("/dev/console")),
        wantLinks,
      );
      assert.equal(fromCpio.get("/bin/tool")?.mode, 0o4755);

      const ext4Path = join(work, "r.ext4");
      await ext4Output.write(tree, { tmp: ext4Path, final: ext4Path }, quiet);
      const fromExt4 = readExt4(ext4Path);
      assert.deepEqual(linkGroups(fromExt4), wantLinks);
      assert.deepEqual(
        imageDifferences(fromExt4, want, { extra: ["/lost+found"] }),
        [],
      );
    });
  });

  describe("diff_ids and digests", () => {
    const good = rawLayer(baseTar);
    const other = rawLayer(tar(raw.file("other", "o")));

    function storeFiles(store: ContentStore): string[] {
      const list = (d: string): string[] => {
        try {
          return readdirSync(join(store.root, d));
        } catch {
          return [];
        }
      };
      return [...list("sha256"), ...list("tmp")];
    }

    it("refuses a layer whose content does not match the config's diff_id, storing nothing", async () => {
      const store = new ContentStore(join(tempDir("a3s-store-"), "blobs"));
      await assert.rejects(
        applyLayers([{ ...good, diffId: other.diffId }], { store }),
        (e) => isA3sError(e, "EDIGEST") && /diff_id/.test(e.message) && e.subject === other.diffId,
      );
      assert.deepEqual(storeFiles(store), []);
    });

    it("names the diff_id mismatch, not the tar, when altered bytes are also a broken tar (the headers are parsed while the layer decompresses)", async () => {
      // A member named "../escape": parsed alone it is refused with EPATH,
      // but its bytes are not the diff_id's, and that is the error to give.
      const broken = rawLayer(tar(raw.file("../escape", "x")));
      await assert.rejects(applyLayers([broken]), (e) => isA3sError(e, "EPATH"));
      const store = new ContentStore(join(tempDir("a3s-store-"), "blobs"));
      await assert.rejects(
        applyLayers([{ ...broken, diffId: other.diffId }], { store }),
        (e) => isA3sError(e, "EDIGEST") && /diff_id/.test(e.message) && e.subject === other.diffId,
      );
      assert.deepEqual(storeFiles(store), []);
    });

    it("refuses a blob whose digest or size is not its descriptor's, storing nothing", async () => {
      const store = new ContentStore(join(tempDir("a3s-store-"), "blobs"));
      await assert.rejects(applyLayers([{ ...good, digest: other.digest }], { store }), (e) => isA3sError(e, "EDIGEST") && e.subject === other.digest);
      await assert.rejects(applyLayers([{ ...good, size: good.size - 1 }], { store }), (e) => isA3sError(e, "ESIZE"));
      await assert.rejects(applyLayers([{ ...good, size: good.size + 1 }], { store }), (e) => isA3sError(e, "ESIZE"));
      assert.deepEqual(storeFiles(store), []);
    });

    it("refuses a config whose diff_ids do not match the manifest's layers", async () => {
      const image = resolvedImage(makeImage([good]));
      const twoLayers: ResolvedImage = { ...image, layers: [...image.layers, ...image.layers] };
      const store = new ContentStore(join(tempDir("a3s-store-"), "blobs"));
      await assert.rejects(imageToTree(twoLayers, { epoch: 0, store, progress: () => {} }), (e) => isA3sError(e, "EIMAGE"));
    });

    it("points file contents into the cached uncompressed layer, and a rebuild reads nothing but the cache", async () => {
      const store = new ContentStore(join(tempDir("a3s-store-"), "blobs"));
      const first: string[] = [];
      const { tree } = await applyLayers([good], { store, progress: (m) => first.push(m) });
      const inode = tree.lookup("/etc/hostname");
      assert.ok(inode?.kind === "file" && inode.content.type === "blobRange");
      assert.equal(inode.content.blobPath, store.path(good.diffId));
      assert.ok(first.some((m) => /decompressing \(gzip\)/.test(m)));

      const image = resolvedImage(makeImage([good]));
      let opened = 0;
      const counting: ResolvedImage = {
        ...image,
        layers: image.layers.map((l) => ({ ...l, open: () => (opened++, l.open()) })),
      };
      const second: string[] = [];
      const again = await imageToTree(counting, { epoch: 0, store, progress: (m) => second.push(m) });
      assert.equal(opened, 0);
      assert.ok(second.some((m) => /\(cached\)/.test(m)));
      assert.equal(await text(again.tree, "/etc/hostname"), "box\n");
    });

    it("reports progress for every layer", async () => {
      const messages: string[] = [];
      await applyLayers([good, other], { progress: (m) => messages.push(m) });
      assert.ok(messages.some((m) => /layer 1\/2 .*applied 4 entries/.test(m)));
      assert.ok(messages.some((m) => /layer 2\/2 .*applied 1 entries/.test(m)));
    });
  });

  describe("image config", () => {
    const config = (over: object): string =>
      JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] }, ...over });

    it("requires rootfs.type layers, digests as diff_ids, and the right types", () => {
      assert.throws(() => parseImageConfig(config({ rootfs: { type: "tarballs", diff_ids: [] } }), "c"), (e) => isA3sError(e, "EIMAGE") && /layers/.test(e.message));
      assert.throws(() => parseImageConfig(config({ rootfs: { type: "layers", diff_ids: ["sha256:../../x"] } }), "c"), (e) => isA3sError(e, "EIMAGE"));
      assert.throws(() => parseImageConfig(config({ config: { Cmd: "sh -c x" } }), "c"), (e) => isA3sError(e, "EIMAGE") && /Cmd/.test(e.message));
      assert.throws(() => parseImageConfig(config({ config: { Env: ["NOEQUALS"] } }), "c"), (e) => isA3sError(e, "EIMAGE"));
      assert.throws(() => parseImageConfig("{not json", "c"), (e) => isA3sError(e, "EIMAGE"));
      assert.throws(() => parseImageConfig(config({ os: undefined }), "c"), (e) => isA3sError(e, "EIMAGE"));
      // Docker writes null for unset fields.
      const ok = parseImageConfig(config({ config: { Entrypoint: null, Cmd: ["/bin/sh"], Env: null } }), "c");
      assert.deepEqual(ok.config, { Cmd: ["/bin/sh"] });
    });

    const accounts = rawLayer(
      tar(
        raw.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:App:/home/app:/bin/sh\n"),
        raw.file("etc/group", "root:x:0:\napp:x:1001:\nstaff:x:50:app\n"),
        raw.file("usr/local/bin/agent", "agent", { mode: 0o755 }),
        raw.file("usr/bin/notexec", "x", { mode: 0o644 }),
        raw.symlink("bin", "usr/bin"),
      ),
    );

    it("turns Entrypoint, Cmd, Env, WorkingDir and User into agent defaults", async () => {
      const { agentDefaults, warnings } = await applyLayers([accounts], {
        entrypoint: ["agent", "--serve"],
        cmd: ["--port", "80"],
        env: ["LANG=C.UTF-8"],
        workingDir: "/srv/app",
        user: "app",
      });
      assert.deepEqual(warnings, []);
      assert.deepEqual(agentDefaults, {
        path: "/usr/local/bin/agent",
        args: ["--serve", "--port", "80"],
        env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/home/app"],
        cwd: "/srv/app",
        user: "1000:1001",
      });
    });

    it("resolves user and group names through the image's own files, and keeps numeric ids", async () => {
      const user = async (u: string): Promise<string | undefined> => (await applyLayers([accounts], { cmd: ["/usr/local/bin/agent"], user: u })).agentDefaults.user;
      assert.equal(await user("app:staff"), "1000:50");
      assert.equal(await user("1000"), "1000:1001");
      assert.equal(await user("4242"), "4242:0");
      assert.equal(await user("4242:4343"), "4242:4343");
      assert.equal(await user("root"), "0:0");
    });

    it("warns, and names no agent, when the program or the user cannot be found", async () => {
      const ghost = await applyLayers([accounts], { cmd: ["/usr/local/bin/agent"], user: "ghost" });
      assert.equal(ghost.agentDefaults.path, undefined);
      assert.equal(ghost.agentDefaults.user, undefined);
      assert.match(ghost.warnings.join("\n"), /ghost.*not in its \/etc\/passwd/);
      const noGroup = await applyLayers([accounts], { cmd: ["/usr/local/bin/agent"], user: "app:wheel" });
      assert.match(noGroup.warnings.join("\n"), /wheel/);
      const missing = await applyLayers([accounts], { cmd: ["nothere"] });
      assert.equal(missing.agentDefaults.path, undefined);
      assert.match(missing.warnings.join("\n"), /not found in its PATH/);
      const notExec = await applyLayers([accounts], { cmd: ["notexec"] });
      assert.equal(notExec.agentDefaults.path, undefined);
      const viaLink = await applyLayers([accounts], { entrypoint: ["/bin/notexec"] });
      assert.match(viaLink.warnings.join("\n"), /not an executable/);
    });
  });
});
