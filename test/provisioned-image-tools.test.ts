// erofs and squashfs images made by Debian 13's mkfs.erofs (erofs-utils 1.8)
// and mksquashfs (squashfs-tools 4.6), provisioned into the cache where the
// host's cannot read a tar stream: the tree's tar stream goes straight into
// the tool, with no staging copy. Real tools, the real archive; the bundles
// go into the user's cache once and are verified on every use.
import assert from "node:assert/strict";
import { cpSync, writeFileSync, chmodSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { mkfsErofsCapabilities, mksquashfsCapabilities } from "../src/formats/image/index.js";
import { chooseImageTools } from "../src/outputs/image-tool-choice.js";
import { createErofsWriter, createSquashfsWriter } from "../src/outputs/registry.js";
import { cachedImageTool, provisionImageTool, type ImageToolName } from "../src/provision/index.js";
import { cacheRoot } from "../src/util/cache-dir.js";
import { imageDifferences } from "./helpers/image-compare.js";
import { readErofs, readSquashfs } from "./helpers/image-readers.js";
import { expectedView, imageSampleTree } from "./helpers/image-sample.js";
import { buildImage, isRoot, scratchLeftBy, sha256File } from "./helpers/image-test-kit.js";
import { tempDir } from "./helpers/temp-dir.js";

/** The cached tool, provisioned first when the cache has none (once per user cache: it takes seconds). */
async function provisioned(tool: ImageToolName): Promise<NonNullable<Awaited<ReturnType<typeof cachedImageTool>>>> {
  if (!(await cachedImageTool(cacheRoot(), tool))) await provisionImageTool(cacheRoot(), tool, () => {});
  const found = await cachedImageTool(cacheRoot(), tool);
  assert.ok(found, `${tool} is in the cache after provisioning`);
  return found;
}

const readsBack = !isRoot && "reading an image back keeps owners and devices only as root";

describe("Debian 13's mkfs tools, provisioned into the cache", () => {
  it("mkfs.erofs 1.8 reads the tar stream on stdin: every entry kind exact, byte-identical twice, nothing left in TMPDIR", { skip: readsBack }, async () => {
    const { command, version } = await provisioned("mkfs.erofs");
    assert.match(version, /erofs-utils\) 1\.(8|9|\d\d)/);
    assert.equal((await mkfsErofsCapabilities(command)).tarInput, true);
    const writer = createErofsWriter({ tools: { "mkfs.erofs": command } });
    const a = await buildImage(writer, imageSampleTree(), "a.erofs");
    assert.deepEqual(imageDifferences(await readErofs(a), await expectedView(imageSampleTree())), []);
    const b = await buildImage(writer, imageSampleTree(), "b.erofs");
    assert.equal(sha256File(a), sha256File(b));
    assert.deepEqual(await scratchLeftBy(writer, imageSampleTree()), { left: [], error: undefined });
  });

  it("mksquashfs 4.6 reads the tar stream on stdin: every entry kind exact, byte-identical twice, nothing left in TMPDIR", { skip: readsBack }, async () => {
    const { command, version } = await provisioned("mksquashfs");
    assert.match(version, /^mksquashfs version 4\.(6|[7-9])/);
    assert.equal((await mksquashfsCapabilities(command)).tarInput, true);
    const writer = createSquashfsWriter({ tools: { mksquashfs: command } });
    const a = await buildImage(writer, imageSampleTree(), "a.squashfs");
    assert.deepEqual(imageDifferences(readSquashfs(a), await expectedView(imageSampleTree())), []);
    const b = await buildImage(writer, imageSampleTree(), "b.squashfs");
    assert.equal(sha256File(a), sha256File(b));
    assert.deepEqual(await scratchLeftBy(writer, imageSampleTree()), { left: [], error: undefined });
  });

  it("an output with a tool cache picks the host's tool when it reads tar, else the cached one", async () => {
    await provisioned("mkfs.erofs");
    const tools = await chooseImageTools("erofs", { epoch: 0, warn: () => {}, toolCache: { dir: cacheRoot(), provision: false } });
    const chosen = tools?.["mkfs.erofs"];
    assert.ok(chosen);
    const hostReadsTar = chosen.origin === "host" && (await mkfsErofsCapabilities(chosen)).tarInput;
    assert.ok(hostReadsTar || chosen.origin === "cache", JSON.stringify(chosen));
    assert.equal((await mkfsErofsCapabilities(chosen)).tarInput, true);
    // No cache given: the host's, whatever it can do.
    assert.equal(await chooseImageTools("erofs", { epoch: 0, warn: () => {} }), undefined);
  });

  it("a damaged bundle is refused by name and never run", async () => {
    const { command } = await provisioned("mkfs.erofs");
    const cache = tempDir("a3s-damaged-tools-");
    const bundle = join(command.label, "..", "..");
    const copy = join(cache, "erofs-utils", bundle.split("/").pop() as string);
    cpSync(bundle, copy, { recursive: true });
    const lib = readdirSync(join(copy, "lib")).find((n) => n.startsWith("liblz4"));
    assert.ok(lib);
    chmodSync(join(copy, "lib", lib), 0o644);
    writeFileSync(join(copy, "lib", lib), "not a library");
    await assert.rejects(cachedImageTool(cache, "mkfs.erofs"), (e: Error & { code?: string }) => {
      assert.equal(e.code, "ECORRUPT");
      assert.match(e.message, new RegExp(`the cached erofs-utils file .*lib/${lib.replace(/\./g, "\\.")} does not match its recorded SHA256`));
      return true;
    });

    // An output that may provision replaces the damaged bundle (same versions, fetched again) and runs the fresh one.
    const warnings: string[] = [];
    const tools = await chooseImageTools("erofs", { epoch: 0, warn: (w) => warnings.push(w), toolCache: { dir: cache, provision: true } });
    const hostReadsTar = (await chooseImageTools("erofs", { epoch: 0, warn: () => {}, toolCache: { dir: tempDir("a3s-empty-cache-"), provision: false } }))?.["mkfs.erofs"];
    if (hostReadsTar?.origin === "host" && (await mkfsErofsCapabilities(hostReadsTar)).tarInput) return; // a Debian 13 host never looks at the cache
    assert.ok(warnings.some((w) => /does not match its recorded SHA256 .*; it will not be run; fetching a fresh copy/.test(w)), warnings.join("\n"));
    assert.equal(tools?.["mkfs.erofs"]?.origin, "cache");
    assert.ok(await cachedImageTool(cache, "mkfs.erofs"), "the bundle verifies again");
  });
});
