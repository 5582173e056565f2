// `-o oci:DIR[:TAG]`: the rootfs as an OCI image layout, checked with the
// tools people use on layouts (umoci, skopeo) and with our own oci: source.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { gunzipSync } from "node:zlib";
import { isA3sError } from "../src/errors.js";
import { GUEST_PROTOCOL_VERSION } from "../src/layout/index.js";
import { ociLayoutSource } from "../src/sources/oci-layout-source.js";
import { parseOutputSpec, writeOutputs } from "../src/outputs/write-outputs.js";
import { bytesContent, type RootfsTree } from "../src/tree/index.js";
import { runCli } from "./helpers/cli.js";
import { observeDirectory } from "./helpers/extracted-tree.js";
import { imageDifferences } from "./helpers/image-compare.js";
import { expectedView, imageSampleTree } from "./helpers/image-sample.js";
import { compileTestBinary } from "./helpers/static-binary.js";
import { tempDir } from "./helpers/temp-dir.js";
import { umociUnpack } from "./helpers/umoci-image.js";

const quiet = { epoch: 0, warn: () => undefined };

interface LayoutFiles {
  index: { manifests: { digest: string; mediaType: string; annotations?: Record<string, string> }[] };
  manifest: { config: { digest: string; mediaType: string }; layers: { digest: string; mediaType: string; size: number }[] };
  config: {
    created: string;
    architecture: string;
    os: string;
    config: { Entrypoint?: string[]; Env?: string[]; User?: string; WorkingDir?: string; Labels?: Record<string, string> };
    rootfs: { diff_ids: string[] };
  };
  blob(digest: string): Buffer;
}

function readLayout(dir: string): LayoutFiles {
  const blob = (digest: string): Buffer => readFileSync(join(dir, "blobs", "sha256", digest.slice("sha256:".length)));
  const index = JSON.parse(readFileSync(join(dir, "index.json"), "utf8")) as LayoutFiles["index"];
  const manifest = JSON.parse(blob(index.manifests[0]!.digest).toString()) as LayoutFiles["manifest"];
  const config = JSON.parse(blob(manifest.config.digest).toString()) as LayoutFiles["config"];
  return { index, manifest, config, blob };
}

/** A tree with a guest config, as a build makes it (the sample tree has every entry kind but no A3S layer). */
function sampleWithGuestConfig(): RootfsTree {
  const tree = imageSampleTree();
  tree.addFile(
    "/etc/a3s/guest.conf",
    bytesContent("a3s-guest-config 1\nagent=/opt/agent\narg=--serve\narg=two words\nenv=A=1\ncwd=/workspace\nuser=1000:1000\n"),
  );
  tree.addFile("/etc/a3s/guest.conf.d/50-more.conf", bytesContent("a3s-guest-config 1\nenv=B=2\n"));
  return tree;
}

describe("-o oci:DIR[:TAG]", () => {
  const dir = tempDir();
  const layoutDir = join(dir, "layout");
  const dirOutput = join(dir, "rootfs");

  before(async () => {
    await writeOutputs(sampleWithGuestConfig(), [parseOutputSpec(`oci:${layoutDir}:v1`), parseOutputSpec(`dir:${dirOutput}`)], quiet);
  });

  it("parses oci:DIR and oci:DIR:TAG, and refuses a bad tag", () => {
    assert.deepEqual(parseOutputSpec("oci:out/img"), { format: "oci", path: "out/img", tag: "latest" });
    assert.deepEqual(parseOutputSpec("oci:out/img:v1.2"), { format: "oci", path: "out/img", tag: "v1.2" });
    assert.deepEqual(parseOutputSpec("oci:/abs/a:b/img"), { format: "oci", path: "/abs/a:b/img", tag: "latest" });
    assert.throws(() => parseOutputSpec("oci:img:-bad"), (e: unknown) => isA3sError(e, "EUSAGE") && /not a valid tag/.test(e.message));
    assert.throws(() => parseOutputSpec("oci::v1"), (e: unknown) => isA3sError(e, "EUSAGE") && /no directory/.test(e.message));
  });

  it("writes a layout with one manifest named by the tag, one layer and a config that starts the agent", () => {
    const l = readLayout(layoutDir);
    assert.deepEqual(JSON.parse(readFileSync(join(layoutDir, "oci-layout"), "utf8")), { imageLayoutVersion: "1.0.0" });
    assert.equal(l.index.manifests.length, 1);
    assert.equal(l.index.manifests[0]!.annotations?.["org.opencontainers.image.ref.name"], "v1");
    assert.equal(l.manifest.layers.length, 1);
    assert.equal(l.manifest.layers[0]!.mediaType, "application/vnd.oci.image.layer.v1.tar+gzip");
    assert.deepEqual(l.config.config.Entrypoint, ["/opt/agent", "--serve", "two words"]);
    assert.deepEqual(l.config.config.Env, ["A=1", "B=2"], "a drop-in's env is appended, as init does");
    assert.equal(l.config.config.User, "1000:1000");
    assert.equal(l.config.config.WorkingDir, "/workspace");
    assert.equal(l.config.config.Labels?.["vnd.a3s.rootfs.layout.version"], String(GUEST_PROTOCOL_VERSION));
    assert.equal(l.config.created, "1970-01-01T00:00:00Z");
    assert.equal(l.config.os, "linux");
    // Every blob is what its name says.
    for (const name of readdirSync(join(layoutDir, "blobs", "sha256"))) {
      const hash = execFileSync("sha256sum", [join(layoutDir, "blobs", "sha256", name)], { encoding: "utf8" }).split(" ")[0];
      assert.equal(hash, name);
    }
    // The diff_id is the uncompressed layer's digest; the gzip header has mtime 0 and OS 3 (Unix).
    const layer = l.blob(l.manifest.layers[0]!.digest);
    assert.deepEqual([...layer.subarray(4, 8)], [0, 0, 0, 0]);
    assert.equal(layer[9], 3);
    const tar = gunzipSync(layer);
    assert.equal(`sha256:${execFileSync("sha256sum", { input: tar, encoding: "utf8" }).split(" ")[0]}`, l.config.rootfs.diff_ids[0]);
  });

  it("umoci unpack of the layout gives the same tree as -o dir:", () => {
    const rootfs = umociUnpack(layoutDir, "v1", join(dir, "bundle"));
    const fromUmoci = observeDirectory(rootfs, { xattrs: true });
    const fromDir = observeDirectory(dirOutput, { xattrs: true });
    assert.ok(fromDir.size > 20);
    // The bundle's rootfs directory itself is umoci's; its metadata is not the image's.
    fromUmoci.delete("/");
    fromDir.delete("/");
    // umoci leaves out, on purpose, xattrs it holds to be the host's business
    // (SELinux labels, overlayfs's own); the layer carries them (next test).
    for (const o of fromDir.values()) {
      if (o.xattrs) for (const k of Object.keys(o.xattrs)) if (k === "security.selinux" || k.startsWith("trusted.overlay.")) delete o.xattrs[k];
    }
    assert.deepEqual(imageDifferences(fromUmoci, fromDir), []);
  });

  it("our oci: source reads the layout back to the same tree, every xattr included", async () => {
    const back = await ociLayoutSource(`${layoutDir}:v1`).load({ epoch: 0, warn: () => undefined, progress: () => undefined });
    assert.deepEqual(imageDifferences(await expectedView(back.tree), await expectedView(sampleWithGuestConfig())), []);
  });

  it("skopeo inspect accepts the layout and sees our digest, config and layer", () => {
    const l = readLayout(layoutDir);
    const info = JSON.parse(execFileSync("skopeo", ["inspect", `oci:${layoutDir}:v1`], { encoding: "utf8" })) as {
      Digest: string;
      Layers: string[];
      Env: string[];
      Labels: Record<string, string>;
    };
    assert.equal(info.Digest, l.index.manifests[0]!.digest);
    assert.deepEqual(info.Layers, [l.manifest.layers[0]!.digest]);
    assert.deepEqual(info.Env, ["A=1", "B=2"]);
    assert.equal(info.Labels["vnd.a3s.rootfs.layout.version"], "2");
  });

  it("is reproducible: the same tree and epoch give the same manifest digest and layer bytes", async () => {
    const again = join(dir, "again");
    const results = await writeOutputs(sampleWithGuestConfig(), [parseOutputSpec(`oci:${again}:v1`)], quiet);
    const a = readLayout(layoutDir);
    const b = readLayout(again);
    assert.equal(results[0]!.digest, a.index.manifests[0]!.digest);
    assert.equal(b.index.manifests[0]!.digest, a.index.manifests[0]!.digest);
    assert.deepEqual(readdirSync(join(again, "blobs", "sha256")).sort(), readdirSync(join(layoutDir, "blobs", "sha256")).sort());
    // Another epoch is another config, so another digest: the digest follows the inputs.
    const other = await writeOutputs(sampleWithGuestConfig(), [parseOutputSpec(`oci:${join(dir, "other")}`)], { ...quiet, epoch: 1 });
    assert.notEqual(other[0]!.digest, a.index.manifests[0]!.digest);
  });

  for (const compression of ["zstd", "none"] as const) {
    it(`--layer-compression ${compression}: the media type says so, skopeo reads it, and our oci: source gives the tree back`, async () => {
      const out = join(dir, `layout-${compression}`);
      const tree = sampleWithGuestConfig();
      await writeOutputs(tree, [{ ...parseOutputSpec(`oci:${out}:c`), compression }], quiet);
      const l = readLayout(out);
      assert.equal(l.manifest.layers[0]!.mediaType, compression === "zstd" ? "application/vnd.oci.image.layer.v1.tar+zstd" : "application/vnd.oci.image.layer.v1.tar");
      if (compression === "none") assert.equal(l.manifest.layers[0]!.digest, l.config.rootfs.diff_ids[0]);
      execFileSync("skopeo", ["inspect", `oci:${out}:c`], { stdio: "ignore" });
      const back = await ociLayoutSource(`${out}:c`).load({ epoch: 0, warn: () => undefined, progress: () => undefined });
      const paths = (t: RootfsTree): string[] => t.entries().map((e) => e.path).sort();
      assert.deepEqual(paths(back.tree), paths(tree));
    });
  }

  it("through the CLI: build -o oci:DIR:TAG --json reports the manifest digest, and building twice gives it again", () => {
    const agent = compileTestBinary();
    const out = join(dir, "cli-layout");
    const env = { SOURCE_DATE_EPOCH: "0" };
    const args = ["build", "--agent", agent, "--agent-arg", "--task", "--env", "K=V", "-o", `oci:${out}:t1`, "--json"];
    const first = runCli(args, { env });
    assert.equal(first.status, 0, first.stderr);
    const second = runCli(args, { env });
    assert.equal(second.status, 0, second.stderr);
    const d1 = (JSON.parse(first.stdout) as { outputs: { digest: string }[] }).outputs[0]!.digest;
    const d2 = (JSON.parse(second.stdout) as { outputs: { digest: string }[] }).outputs[0]!.digest;
    assert.match(d1, /^sha256:[0-9a-f]{64}$/);
    assert.equal(d2, d1);
    const l = readLayout(out);
    assert.deepEqual(l.config.config.Entrypoint, ["/a3s/agent/a3s-box-code", "--task"]);
    assert.deepEqual(l.config.config.Env, ["K=V"]);
    assert.equal(l.config.config.User, "0:0");
    assert.equal(l.config.architecture, "amd64");
  });

  it("replaces a layout it wrote, but never a directory holding anything else, unless --force", async () => {
    const tree = sampleWithGuestConfig();
    const out = join(tempDir(), "layout");
    await writeOutputs(tree, [parseOutputSpec(`oci:${out}`)], quiet);
    // Ours: replaced, also with another compression (other blobs).
    await writeOutputs(tree, [{ ...parseOutputSpec(`oci:${out}`), compression: "zstd" }], quiet);
    assert.equal(readLayout(out).manifest.layers[0]!.mediaType, "application/vnd.oci.image.layer.v1.tar+zstd");
    const refused = (e: unknown): boolean => isA3sError(e, "EEXIST") && /a3s-rootfs did not write/.test(e.message) && /--force/.test(e.hint ?? "");
    // A blob of another image beside ours: replacing the layout would lose it.
    const stray = join(out, "blobs", "sha256", "0".repeat(64));
    writeFileSync(stray, "another image's blob");
    await assert.rejects(writeOutputs(tree, [parseOutputSpec(`oci:${out}`)], quiet), refused);
    assert.equal(readFileSync(stray, "utf8"), "another image's blob");
    // A directory of the user's.
    const project = tempDir();
    writeFileSync(join(project, "notes.txt"), "mine");
    await assert.rejects(writeOutputs(tree, [parseOutputSpec(`oci:${project}`)], quiet), refused);
    assert.equal(readFileSync(join(project, "notes.txt"), "utf8"), "mine");
    await writeOutputs(tree, [parseOutputSpec(`oci:${project}`)], { ...quiet, force: true });
    assert.equal(existsSync(join(project, "notes.txt")), false);
    assert.equal(readLayout(project).index.manifests.length, 1);
    // Nothing can be written inside an oci output.
    await assert.rejects(
      writeOutputs(tree, [parseOutputSpec(`oci:${out}`), parseOutputSpec(`tar:${join(out, "x.tar")}`)], quiet),
      (e: unknown) => isA3sError(e, "EUSAGE") && /inside the oci output/.test(e.message),
    );
  });

  it("refuses pushes of formats that are not boot images, and pushes to a digest", () => {
    for (const spec of ["tar:docker://localhost:5000/a", "dir:docker://localhost:5000/a", "oci:docker://localhost:5000/a"]) {
      assert.throws(() => parseOutputSpec(spec), (e: unknown) => isA3sError(e, "EUSAGE") && /cannot be pushed/.test(e.message), spec);
    }
    assert.throws(
      () => parseOutputSpec(`docker://localhost:5000/a@sha256:${"a".repeat(64)}`),
      (e: unknown) => isA3sError(e, "EUSAGE") && /a tag, not a digest/.test(e.message),
    );
    assert.deepEqual(parseOutputSpec("docker://localhost:5000/team/box"), {
      format: "oci",
      path: "docker://localhost:5000/team/box:latest",
      push: { reference: "localhost:5000/team/box:latest" },
    });
    assert.equal(parseOutputSpec("erofs:docker://alpine").path, "docker://docker.io/library/alpine:latest");
  });
});
