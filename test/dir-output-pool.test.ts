// The dir output's writer threads (src/formats/dir/write-pool.ts): a tree
// large enough to be written by more than one thread comes out exact, a
// failure in a thread reaches the caller as the error it was, and a
// cancelled write creates nothing once its promise has settled.
import assert from "node:assert/strict";
import { lstatSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { isA3sError } from "../src/errors.js";
import { materialiseTree } from "../src/formats/dir/index.js";
import { bytesContent, RootfsTree } from "../src/tree/index.js";
import { identityOf } from "../src/util/file-identity.js";
import { tempDir } from "./helpers/temp-dir.js";

/** More entries than the pool's threshold (2000), so two threads or more write them. */
const FILES = 3000;
const multiCore = availableParallelism() >= 2;

function largeTree(blob: string): RootfsTree {
  const tree = new RootfsTree({ epoch: 1000 });
  const verified = identityOf(statSync(blob, { bigint: true }));
  for (let i = 0; i < FILES; i++) {
    const dir = `/d${i % 30}`;
    if (i % 3 === 0) tree.addFile(`${dir}/b${i}`, bytesContent(`file ${i}\n`), { mode: 0o600 + (i % 0o100), mtime: 5000 + i });
    else if (i % 3 === 1) tree.addFile(`${dir}/r${i}`, { type: "blobRange", blobPath: blob, offset: i, size: 100, verified }, { mode: 0o644, mtime: 6000 + i });
    else tree.addSymlink(`${dir}/l${i}`, `../target-${i}`, { mtime: 7000 + i });
  }
  return tree;
}

function blobFile(dir: string): string {
  const blob = join(dir, "blob");
  writeFileSync(blob, Buffer.from(Array.from({ length: FILES + 200 }, (_, i) => i % 251)));
  return blob;
}

describe("dir output on writer threads", { skip: !multiCore && "one core: the pool writes on the main thread" }, () => {
  it(`writes ${FILES} files and symlinks exactly: content, mode, mtime, link targets`, async () => {
    const dir = tempDir();
    const blob = blobFile(dir);
    const out = join(dir, "out");
    await materialiseTree(largeTree(blob), out, { privileged: process.getuid?.() === 0 });
    const blobBytes = readFileSync(blob);
    for (let i = 0; i < FILES; i++) {
      const d = join(out, `d${i % 30}`);
      if (i % 3 === 0) {
        const p = join(d, `b${i}`);
        assert.equal(readFileSync(p, "utf8"), `file ${i}\n`);
        assert.equal(statSync(p).mode & 0o7777, 0o600 + (i % 0o100), p);
        assert.equal(statSync(p).mtimeMs, (5000 + i) * 1000, p);
      } else if (i % 3 === 1) {
        const p = join(d, `r${i}`);
        assert.ok(readFileSync(p).equals(blobBytes.subarray(i, i + 100)), p);
        assert.equal(statSync(p).mtimeMs, (6000 + i) * 1000, p);
      } else {
        const p = join(d, `l${i}`);
        assert.equal(readlinkSync(p), `../target-${i}`);
        assert.equal(lstatSync(p).mtimeMs, (7000 + i) * 1000, p);
      }
    }
  });

  it("a blob changed after its digest was checked fails the write with ECONTENT, naming the rootfs path, as on the main thread", async () => {
    const dir = tempDir();
    const blob = blobFile(dir);
    const tree = largeTree(blob);
    // Rewritten with the same size: only its identity (times) differs now.
    await new Promise((r) => setTimeout(r, 20));
    writeFileSync(blob, readFileSync(blob));
    await assert.rejects(materialiseTree(tree, join(dir, "out"), { privileged: false }), (e) => {
      assert.ok(isA3sError(e, "ECONTENT"), String(e));
      assert.match(e.subject ?? "", /^\/d\d+\/r\d+$/);
      assert.ok(e.hint, "the hint survives the thread");
      return true;
    });
  });

  it("a thread's failure stops the other threads' batches: most of the tree is never written", async () => {
    const dir = tempDir();
    const tree = largeTree(blobFile(dir));
    // The first file in walk order reads a blob rewritten after its identity
    // was taken: the first thread fails on its first entry, while the second
    // is writing the second batch.
    const bad = join(dir, "bad-blob");
    writeFileSync(bad, "0123456789");
    tree.addFile("/a/first", { type: "blobRange", blobPath: bad, offset: 0, size: 4, verified: identityOf(statSync(bad, { bigint: true })) }, { mode: 0o644, mtime: 1 });
    await new Promise((r) => setTimeout(r, 20));
    writeFileSync(bad, readFileSync(bad));
    const out = join(dir, "out");
    await assert.rejects(materialiseTree(tree, out, { privileged: false }), (e) => isA3sError(e, "ECONTENT") && e.subject === "/a/first");
    // Without the stop every batch after the first would be written: all but 64 entries.
    const written = countNames(out) - 31; // the 31 directories
    assert.ok(written < FILES / 2, `${written} of ${FILES + 1} entries were written after the first failed`);
  });

  it("a cancelled write rejects with the signal's reason, and nothing is created after it settles", async () => {
    const dir = tempDir();
    const out = join(dir, "out");
    const ctl = new AbortController();
    const reason = new Error("cancelled by the test");
    const written = materialiseTree(largeTree(blobFile(dir)), out, { privileged: false, signal: ctl.signal });
    setTimeout(() => ctl.abort(reason), 5);
    await assert.rejects(written, (e) => e === reason);
    const settled = countNames(out);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(countNames(out), settled, "entries appeared after the write settled");
  });
});

/** How many names there are under `dir`, recursively (0 when it is not there). */
function countNames(dir: string): number {
  let n = 0;
  const pending = [dir];
  while (pending.length > 0) {
    const d = pending.pop() as string;
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      continue;
    }
    for (const name of names) {
      n++;
      if (lstatSync(join(d, name)).isDirectory()) pending.push(join(d, name));
    }
  }
  return n;
}
