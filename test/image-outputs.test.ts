import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parseOutputSpec, writeOutputs } from "../src/outputs/write-outputs.js";
import { imageSampleTree, rootOwnedTree } from "./helpers/image-sample.js";
import { isRoot, sha256File } from "./helpers/image-test-kit.js";
import { tempDir } from "./helpers/temp-dir.js";

describe("image outputs through writeOutputs", () => {
  it("publishes ext4, erofs and squashfs under their final names and nothing else", async () => {
    const dir = tempDir("a3s-images-");
    // Without root, old mkfs tools cannot write the sample's devices and security xattrs.
    const tree = isRoot ? imageSampleTree() : rootOwnedTree();
    const specs = ["ext4:root.ext4", "erofs:root.erofs", "squashfs:root.sqfs"].map((s) => {
      const spec = parseOutputSpec(s);
      return { ...spec, path: join(dir, spec.path) };
    });
    const results = await writeOutputs(tree, specs, { epoch: tree.epoch, warn: () => undefined });
    assert.deepEqual(
      results.map((r) => [r.format, r.path, r.sha256]),
      specs.map((s) => [s.format, s.path, sha256File(s.path)]),
    );
    assert.deepEqual(readdirSync(dir).sort(), ["root.erofs", "root.ext4", "root.sqfs"]);
  });
});
