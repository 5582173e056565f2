// fileSha256: the digest the build cache verifies every copy with, and the
// builder reports for every output.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileSha256 } from "../src/util/file-sha256.js";
import { tempDir } from "./helpers/temp-dir.js";

const MiB = 1 << 20;

/** Bytes that differ from chunk to chunk, so a chunk hashed twice, skipped or out of order changes the digest. */
function pattern(size: number): Buffer {
  const b = Buffer.alloc(size + 4);
  for (let i = 0; i < size; i += 4) b.writeUInt32LE(i, i);
  return b.subarray(0, size);
}

describe("fileSha256", () => {
  // Around the 1 MiB read and past the 8 MiB turn of the event loop.
  for (const size of [0, 1, MiB - 1, MiB, MiB + 1, 8 * MiB, 9 * MiB + 3]) {
    it(`gives the SHA-256 and size of a file of ${size} bytes`, async () => {
      const data = pattern(size);
      const path = join(tempDir("a3s-file-sha256-"), "f");
      writeFileSync(path, data);
      assert.deepEqual(await fileSha256(path), { sha256: createHash("sha256").update(data).digest("hex"), bytes: size });
    });
  }

  it("gives each of several hashes run at once its own file's digest (they share one read buffer)", async () => {
    // Past 8 MiB each hash yields to the event loop, so the others read into
    // the shared buffer between its turns.
    const dir = tempDir("a3s-file-sha256-");
    const files = [17 * MiB + 5, 9 * MiB, 12 * MiB + 1].map((size, i) => {
      const data = pattern(size).map((b) => b ^ (i + 1));
      const path = join(dir, `f${i}`);
      writeFileSync(path, data);
      return { path, expected: { sha256: createHash("sha256").update(data).digest("hex"), bytes: size } };
    });
    const got = await Promise.all(files.map((f) => fileSha256(f.path)));
    assert.deepEqual(got, files.map((f) => f.expected));
  });

  it("stops at the next turn of the event loop once the signal fires", async () => {
    const path = join(tempDir("a3s-file-sha256-"), "f");
    writeFileSync(path, pattern(9 * MiB));
    const ac = new AbortController();
    ac.abort(new Error("stop here"));
    await assert.rejects(fileSha256(path, ac.signal), /stop here/);
  });

  it("fails with ENOENT for a missing file", async () => {
    await assert.rejects(fileSha256(join(tempDir("a3s-file-sha256-"), "gone")), (e: NodeJS.ErrnoException) => e.code === "ENOENT");
  });
});
