import assert from "node:assert/strict";
import { lstatSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { escapeOctal, makeSpecialNodes, type SpecialNode } from "../src/formats/dir/batched-tools.js";
import { tempDir } from "./helpers/temp-dir.js";

const isRoot = process.getuid?.() === 0;

describe("dir output's batched helper programs", () => {
  it("makes every node across several program runs, in order, and fails on the first that cannot be made", async () => {
    const dir = tempDir();
    const nodes: SpecialNode[] = ["a", "b", "c", "d", "e"].map((n) => ({ path: join(dir, n), kind: "fifo" }));
    if (isRoot) nodes.push({ path: join(dir, "null"), kind: "char", major: 1, minor: 3 }, { path: join(dir, "vda"), kind: "block", major: 254, minor: 16 });
    await makeSpecialNodes(nodes, undefined, 2);
    for (const n of nodes) {
      const st = lstatSync(n.path);
      assert.ok(n.kind === "fifo" ? st.isFIFO() : n.kind === "char" ? st.isCharacterDevice() : st.isBlockDevice(), n.path);
      assert.equal(st.mode & 0o777, 0o600);
    }
    mkdirSync(join(dir, "sub"));
    const failing: SpecialNode[] = [{ path: join(dir, "sub", "ok"), kind: "fifo" }, { path: join(dir, "missing", "x"), kind: "fifo" }, { path: join(dir, "sub", "after"), kind: "fifo" }];
    await assert.rejects(makeSpecialNodes(failing, undefined, 10), /exited with status 1/);
    assert.ok(lstatSync(join(dir, "sub", "ok")).isFIFO());
    assert.throws(() => lstatSync(join(dir, "sub", "after")), { code: "ENOENT" });
  });

  it("escapes every byte of a path or name outside the plain set as \\ooo", () => {
    assert.equal(escapeOctal("/usr/bin/ping"), "/usr/bin/ping");
    assert.equal(escapeOctal("a b=c\n\\"), "a\\040b\\075c\\012\\134");
    assert.equal(escapeOctal("é"), "\\303\\251");
  });
});
