// The bundled CLI (dist/src/cli/main.bundle.cjs) is one file, yet the files
// the library locates from its own place must still be found from it: the dir
// writer's worker threads (dist/src/formats/dir/write-worker.js) here, the
// package root by every command that prints --version or runs doctor. The
// kernel config fragments are found through the same packageRoot(); the
// unbundled library's side is covered by the dir writer's and kernel config's
// own tests.
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { CLI, runCli } from "./helpers/cli.js";
import { compileTestBinary } from "./helpers/static-binary.js";
import { makeImage, makeLayer, writeOciLayout, type TestEntry } from "./helpers/test-image.js";
import { tempDir } from "./helpers/temp-dir.js";

const FILES = 2500; // over the dir writer's 2,000 entries from which it uses threads

describe("files located from the bundled CLI", () => {
  it("the command run is the bundle's launcher", () => {
    assert.ok(CLI.endsWith("/dist/src/cli/a3s-rootfs.cjs"));
    const manifest = JSON.parse(readFileSync(fileURLToPath(new URL("../../package.json", import.meta.url)), "utf8")) as { bin: Record<string, string> };
    assert.equal(manifest.bin["a3s-rootfs"], "./dist/src/cli/a3s-rootfs.cjs");
  });

  it(`-o dir: with ${FILES} files writes them through the worker threads`, { skip: availableParallelism() < 2 ? "one core: the dir writer uses no threads" : false }, () => {
    const dir = tempDir();
    const entries: TestEntry[] = [];
    for (let i = 0; i < FILES; i++) entries.push({ path: `data/f${i}`, content: `file ${i}\n` });
    const image = makeImage([makeLayer(entries)]);
    writeOciLayout(join(dir, "layout"), "v1", image.manifest, [image.config, ...image.layers]);
    const r = runCli(["build", "oci:layout:v1", "--agent", compileTestBinary(), "-o", "dir:out", "--no-cache"], { cwd: dir, env: { A3S_CACHE_DIR: join(dir, "cache") } });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readdirSync(join(dir, "out", "data")).length, FILES);
    assert.equal(readFileSync(join(dir, "out", "data", "f1234"), "utf8"), "file 1234\n");
  });
});
