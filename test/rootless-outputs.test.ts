// Rootless is tested, not claimed: the same build as root and as an
// unprivileged user gives the same bytes for tar, cpio, ext4, erofs and
// squashfs (and the same tree for dir, read back with its sidecar).
// As root, this test builds both ways itself (setpriv to uid 65534). In the
// unprivileged run of scripts/test.sh it builds as that user and compares
// with the hashes a root build recorded (A3S_ROOT_OUTPUT_HASHES).
import assert from "node:assert/strict";
import { chmodSync, chownSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { buildComparedOutputs, COMPARED_OUTPUTS, type OutputHashes } from "./helpers/rootless-build.js";
import { tempDir } from "./helpers/temp-dir.js";

const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;
const recorded = process.env.A3S_ROOT_OUTPUT_HASHES;

describe("outputs built without root are the bytes root builds", () => {
  it("as root and as uid 65534 (setpriv), every format", { skip: !isRoot && "this run is the unprivileged one; see the next test" }, async () => {
    const base = tempDir("a3s-rootless-");
    chmodSync(base, 0o755);
    const asRoot = join(base, "root");
    const asNobody = join(base, "nobody");
    mkdirSync(asRoot);
    mkdirSync(asNobody);
    chownSync(asNobody, NOBODY, NOBODY);
    const root = await buildComparedOutputs(asRoot);
    assert.equal(root.status, 0, root.stderr);
    const nobody = await buildComparedOutputs(asNobody, NOBODY);
    assert.equal(nobody.status, 0, nobody.stderr);
    assert.match(nobody.stderr, /warning: not running as root: \d+ entries/, "the unprivileged dir output says what it could not apply");
    assert.deepEqual(Object.keys(root.hashes), COMPARED_OUTPUTS);
    assert.deepEqual(nobody.hashes, root.hashes);
  });

  it("as this unprivileged user, compared with a root build's hashes", { skip: (isRoot && "root builds both ways in the test above") || (!recorded && "no A3S_ROOT_OUTPUT_HASHES (scripts/test.sh records them)") }, async () => {
    const expected = JSON.parse(readFileSync(recorded as string, "utf8")) as OutputHashes;
    const mine = await buildComparedOutputs(tempDir("a3s-rootless-"));
    assert.equal(mine.status, 0, mine.stderr);
    assert.deepEqual(mine.hashes, expected);
  });
});
