import assert from "node:assert/strict";
import { appendFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { isA3sError } from "../src/errors.js";
import { ArchiveFile, GrowingArchiveFile } from "../src/formats/archive/index.js";
import { readTarMembers, type TarMember } from "../src/formats/tar/index.js";
import { WriteProgress } from "../src/util/write-progress.js";
import { pax, raw, tar } from "./helpers/raw-tar.js";
import { tempDir } from "./helpers/temp-dir.js";

/** Writes `bytes` to `path` in `step`-byte pieces, reporting each to `progress` after a turn of the event loop. */
async function writeSlowly(path: string, bytes: Buffer, step: number, progress: WriteProgress): Promise<void> {
  for (let at = 0; at < bytes.length; at += step) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    const piece = bytes.subarray(at, Math.min(bytes.length, at + step));
    appendFileSync(path, piece);
    progress.advance(piece.length);
  }
  progress.finish();
}

async function members(source: Parameters<typeof readTarMembers>[0]): Promise<TarMember[]> {
  const out: TarMember[] = [];
  for await (const m of readTarMembers(source)) out.push(m);
  return out;
}

describe("GrowingArchiveFile: a tar parsed while it is written", () => {
  const archive = tar(
    raw.dir("etc"),
    raw.file("etc/hostname", "box\n"),
    pax({ path: "usr/" + "long-name-".repeat(20) }),
    raw.file("placeholder", "x".repeat(5000)),
    raw.symlink("bin", "usr/bin"),
  );

  it("gives the same members as the finished file, whatever the pieces the writer writes", async () => {
    const dir = tempDir("a3s-growing-");
    const done = join(dir, "done.tar");
    writeFileSync(done, archive);
    const file = await ArchiveFile.open(done);
    const expected = await members(file);
    await file.close();
    assert.equal(expected.length, 4);
    for (const step of [1, 7, 512, 4096, archive.length]) {
      const path = join(dir, `growing-${step}.tar`);
      writeFileSync(path, "");
      const progress = new WriteProgress();
      const growing = new GrowingArchiveFile(path, progress, "layer");
      const [got] = await Promise.all([members(growing), writeSlowly(path, archive, step, progress)]);
      growing.close();
      assert.deepEqual(got, expected, `pieces of ${step} bytes`);
    }
  });

  it("finds a truncated archive where the writer stopped, as for the finished file", async () => {
    const path = join(tempDir("a3s-growing-"), "cut.tar");
    writeFileSync(path, "");
    const progress = new WriteProgress();
    const growing = new GrowingArchiveFile(path, progress, "layer 1/1");
    const cut = archive.subarray(0, 1024 + 100);
    const [result] = await Promise.allSettled([members(growing), writeSlowly(path, cut, 300, progress)]);
    growing.close();
    assert.equal(result.status, "rejected");
    assert.ok(isA3sError(result.reason, "ECORRUPT"), String(result.reason));
    assert.match(result.reason.message, /^layer 1\/1 is truncated: it ends at byte 1536 without the end-of-archive marker/);
  });

  it("answers without waiting only for bytes written, or once the writer is done; after a failure, with its error", () => {
    const path = join(tempDir("a3s-growing-"), "now.tar");
    writeFileSync(path, archive.subarray(0, 1024));
    const progress = new WriteProgress();
    progress.advance(1024);
    const growing = new GrowingArchiveFile(path, progress, "layer");
    assert.equal(growing.availableNow(512, 512), 512);
    assert.deepEqual(growing.peek(512, 512), archive.subarray(512, 1024));
    // Not written yet, and the writer is still going: no answer, no bytes.
    assert.equal(growing.availableNow(1000, 100), undefined);
    assert.equal(growing.peek(1000, 100), undefined);
    progress.finish();
    // The writer is done: the archive ends at 1024.
    assert.equal(growing.availableNow(1000, 100), 24);
    assert.equal(growing.peek(1000, 100), undefined);
    const cause = new Error("the digest did not match");
    progress.fail(cause);
    assert.throws(() => growing.availableNow(0, 512), (e) => e === cause);
    assert.equal(growing.peek(0, 512), undefined);
    growing.close();
  });

  it("stops a waiting reader with the writer's own error", async () => {
    const path = join(tempDir("a3s-growing-"), "failed.tar");
    writeFileSync(path, archive.subarray(0, 512));
    const progress = new WriteProgress();
    progress.advance(512);
    const growing = new GrowingArchiveFile(path, progress, "layer");
    const reading = members(growing);
    const cause = new Error("the digest did not match");
    setImmediate(() => progress.fail(cause));
    await assert.rejects(reading, (e) => e === cause);
    growing.close();
  });
});
