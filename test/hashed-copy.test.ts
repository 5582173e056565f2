// hashedCopy: how the build cache copies an entry out (and an output in) and
// learns the SHA-256 of the copy. Both ways it has without reflinks.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { hashedCopy } from "../src/outputs/hashed-copy.js";
import { tempDir } from "./helpers/temp-dir.js";

const MiB = 1 << 20;
const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

/** Bytes that differ from chunk to chunk, so a chunk written twice, skipped or out of order changes the copy. */
function pattern(size: number): Buffer {
  const b = Buffer.alloc(size + 4);
  for (let i = 0; i < size; i += 4) b.writeUInt32LE(i, i);
  return b.subarray(0, size);
}

describe("hashedCopy", () => {
  for (const replacing of [false, true]) {
    for (const size of [0, 1, MiB - 1, MiB, 3.5 * MiB + 3]) {
      it(`${replacing ? "kernel copy, read back" : "one pass"}: copies ${size} bytes to a file of its own and returns the copy's SHA-256 and size`, async () => {
        const dir = tempDir("a3s-hashed-copy-");
        const src = join(dir, "src");
        const data = pattern(size);
        writeFileSync(src, data);
        const got = await hashedCopy(src, join(dir, "dst"), { replacing });
        assert.ok(readFileSync(join(dir, "dst")).equals(data));
        assert.deepEqual(got, { sha256: sha256(data), bytes: size });
        assert.notEqual(statSync(join(dir, "dst")).ino, statSync(src).ino);
        assert.equal(statSync(src).nlink, 1);
      });
    }
  }

  it("fails with the copy's own error when the source is missing (not hidden by the reflink attempt)", async () => {
    const dir = tempDir("a3s-hashed-copy-");
    for (const replacing of [false, true]) {
      await assert.rejects(hashedCopy(join(dir, "gone"), join(dir, "dst"), { replacing }), (e: NodeJS.ErrnoException) => e.code === "ENOENT");
    }
    assert.equal(existsSync(join(dir, "dst")), false);
  });

  it("stops when the signal fires", async () => {
    const dir = tempDir("a3s-hashed-copy-");
    writeFileSync(join(dir, "src"), pattern(9 * MiB));
    const ac = new AbortController();
    ac.abort(new Error("stop here"));
    for (const replacing of [false, true]) {
      await assert.rejects(hashedCopy(join(dir, "src"), join(dir, `dst-${replacing}`), { replacing, signal: ac.signal }), /stop here/);
    }
  });
});
