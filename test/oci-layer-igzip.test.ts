import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { isA3sError } from "../src/errors.js";
import { findIgzip } from "../src/formats/compression/index.js";
import { IGZIP_FROM_BYTES } from "../src/oci/layers/layer-decompress.js";
import { ContentStore } from "../src/oci/store/content-store.js";
import { readContent, type RootfsTree } from "../src/tree/index.js";
import { applyLayers, rawLayer, sha256 } from "./helpers/layer-image.js";
import { raw, tar } from "./helpers/raw-tar.js";
import { tempDir } from "./helpers/temp-dir.js";

// A gzip layer whose blob is a file of its own (a directory layout's) is
// decoded by igzip straight into the store; these are the checks the
// in-process path (oci-hostile-layers.test.ts) has, on that path.

const tools = findIgzip();

/** The igzip processes this test process started (through prlimit) that are still alive. */
function igzipLeft(): number[] {
  const found: number[] = [];
  for (const pid of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if ((comm === "igzip" || comm === "prlimit") && ppid === process.pid) found.push(Number(pid));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

async function noIgzipLeft(): Promise<void> {
  for (let i = 0; i < 100 && igzipLeft().length > 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(igzipLeft(), []);
}

function listing(tree: RootfsTree): string[] {
  return [...tree.entries()].map((e) => `${e.path} ${e.kind} ${e.inode.mode.toString(8)}`);
}

/** Nothing published under the diff_id and no temporary left in the store. */
function assertNothingStored(store: ContentStore, diffId: string): void {
  assert.equal(existsSync(store.path(diffId)), false);
  const tmp = join(store.root, "tmp");
  assert.deepEqual(existsSync(tmp) ? readdirSync(tmp) : [], []);
}

describe("gzip layers decoded by igzip from their files", { skip: !tools && "igzip (Debian package isal) or prlimit is not installed" }, () => {
  const big = Buffer.alloc(3 << 20, "some text in a file\n");
  // Bytes gzip cannot shrink, so that the lower layer's blob, and half of
  // it, are past the size below which zlib decodes instead of igzip.
  const noise = randomBytes(IGZIP_FROM_BYTES * 2.5);
  const lower = tar(raw.dir("etc/"), raw.file("etc/os-release", "ID=test\n"), raw.file("big", big), raw.file("noise", noise), raw.file("gone", "x"));
  const upper = tar(raw.file(".wh.gone", ""), raw.file("etc/added", "new\n"));

  it("gives the tree the in-process path gives, and says it used igzip for the large layer only", async () => {
    const layers = [rawLayer(lower, "gzip"), rawLayer(upper, "gzip")];
    assert.ok(layers[0] && layers[0].size >= IGZIP_FROM_BYTES && layers[1] && layers[1].size < IGZIP_FROM_BYTES);
    const said: string[] = [];
    const viaFiles = await applyLayers(layers, { blobFiles: true, progress: (m) => said.push(m) });
    const inProcess = await applyLayers(layers);
    assert.deepEqual(listing(viaFiles.tree), listing(inProcess.tree));
    const bigFile = viaFiles.tree.lookup("/big", false);
    assert.equal(bigFile?.kind, "file");
    assert.ok((await readContent(bigFile.content, "/big")).equals(big));
    const decoding = said.filter((m) => /decompressing/.test(m));
    assert.equal(decoding.length, 2, said.join("\n"));
    assert.match(decoding[0] ?? "", /layer 1\/2 .*decompressing \(gzip, with igzip\)/);
    assert.doesNotMatch(decoding[1] ?? "", /igzip/);
    assert.ok(existsSync(viaFiles.store.path(sha256(lower))));
  });

  it("refuses a blob whose bytes are not its digest even when they decode to the diff_id", async () => {
    const good = rawLayer(lower, "gzip");
    // The gzip header's MTIME field: the decoded bytes stay the same, the blob's do not.
    const altered = Buffer.from(good.bytes);
    altered[4] = (altered[4] as number) ^ 0xff;
    const store = new ContentStore(join(tempDir("a3s-store-"), "blobs"));
    await assert.rejects(applyLayers([{ ...good, bytes: altered }], { blobFiles: true, store }), (e) => isA3sError(e, "EDIGEST") && e.subject === good.digest);
    assertNothingStored(store, good.diffId);
    await noIgzipLeft();
  });

  it("refuses a layer whose decoded bytes are not the config's diff_id, and stores nothing", async () => {
    const other = rawLayer(upper, "gzip");
    const lying = { ...rawLayer(lower, "gzip"), diffId: other.diffId };
    const store = new ContentStore(join(tempDir("a3s-store-"), "blobs"));
    await assert.rejects(applyLayers([lying], { blobFiles: true, store }), (e) => isA3sError(e, "EDIGEST") && /diff_id/.test(e.message));
    assertNothingStored(store, other.diffId);
    await noIgzipLeft();
  });

  it("names a truncated and a corrupt stream, and stores nothing", async () => {
    const good = rawLayer(lower, "gzip");
    const cut = gzipSync(lower).subarray(0, good.size >> 1);
    assert.ok(cut.length >= IGZIP_FROM_BYTES, "large enough for igzip");
    const store = new ContentStore(join(tempDir("a3s-store-"), "blobs"));
    const withBytes = (bytes: Buffer): typeof good => ({ ...good, bytes, digest: sha256(bytes), size: bytes.length });
    await assert.rejects(applyLayers([withBytes(cut)], { blobFiles: true, store }), (e) => isA3sError(e, "ECORRUPT") && /truncated gzip stream/.test(e.message));
    const flipped = Buffer.from(good.bytes);
    for (const at of [40, good.size >> 1]) flipped[at] = (flipped[at] as number) ^ 0xff;
    await assert.rejects(applyLayers([withBytes(flipped)], { blobFiles: true, store }), (e) => isA3sError(e) && (e.code === "ECORRUPT" || e.code === "EDIGEST"));
    assertNothingStored(store, good.diffId);
    await noIgzipLeft();
  });

  it("refuses a blob declared gzip whose bytes are a plain tar", async () => {
    const plain = rawLayer(lower, "none");
    const declared = { ...plain, mediaType: rawLayer(lower, "gzip").mediaType };
    await assert.rejects(applyLayers([declared], { blobFiles: true }), (e) => isA3sError(e, "ECORRUPT") && /not gzip/.test(e.message));
  });

  it("stops a bomb at the byte cap, stores nothing, and igzip is gone", async () => {
    const zeros = tar(raw.file("noise", noise), raw.file("zeros", Buffer.alloc(256 << 20)));
    const gz = rawLayer(zeros, "gzip");
    assert.ok(gz.size >= IGZIP_FROM_BYTES, "large enough for igzip");
    const store = new ContentStore(join(tempDir("a3s-store-"), "blobs"));
    // Past the noise: the zeros are what meet the cap.
    const cap = 4 << 20;
    await assert.rejects(applyLayers([gz], { blobFiles: true, store, limits: { maxLayerBytes: cap } }), (e) => isA3sError(e, "ELIMIT") && /maxLayerBytes/.test(e.message));
    assertNothingStored(store, gz.diffId);
    await noIgzipLeft();
  });
});
