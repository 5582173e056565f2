import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { isA3sError, RootfsTree, writeOutputs, type OutputFormat } from "../src/index.js";
import { OUTPUT_WRITERS } from "../src/outputs/registry.js";
import { tempDir } from "./helpers/temp-dir.js";

const child = fileURLToPath(new URL("./fixtures/build-many-files.js", import.meta.url));

/** Starts a large build in a child process, waits until its temporary output exists, then sends `signal`. */
async function interruptBuild(format: string, target: string, signal: NodeJS.Signals): Promise<string> {
  const dir = join(target, "..");
  // Image writers stage in TMPDIR; a SIGKILLed build leaves that behind, so give it one the test removes.
  const scratch = join(dir, "..", `${format}-scratch`);
  mkdirSync(scratch, { recursive: true });
  const proc = spawn(process.execPath, [child, format, target, "20000"], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, TMPDIR: scratch },
  });
  let out = "";
  proc.stdout.on("data", (b: Buffer) => (out += b.toString()));
  const exited = new Promise<void>((resolve) => proc.on("exit", () => resolve()));
  // Poll for the temporary name beside the target: the write is then midway.
  for (let i = 0; i < 2000; i++) {
    if (readdirSync(dir).some((n) => n.startsWith(".a3s-"))) break;
    if (out.includes("finished")) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.ok(!out.includes("finished"), "the build finished before it could be interrupted");
  proc.kill(signal);
  await exited;
  return scratch;
}

/** A tree of `count` files of 64 KiB: big enough that writing it takes a while. */
function largeTree(count: number): RootfsTree {
  const tree = new RootfsTree();
  const chunk = new Uint8Array(64 * 1024).fill(7);
  for (let i = 0; i < count; i++) tree.addFile(`/d${i % 64}/f${i}`, { type: "bytes", data: chunk });
  return tree;
}

const formats = Object.keys(OUTPUT_WRITERS) as OutputFormat[];

describe("outputs are published atomically", () => {
  for (const format of formats) {
    it(`${format}: SIGKILL midway never touches the target path`, async () => {
      const dir = join(tempDir(), "out");
      mkdirSync(dir);
      const target = join(dir, `fresh.${format}`);
      await interruptBuild(format, target, "SIGKILL");
      assert.equal(existsSync(target), false);
    });

    it(`${format}: a cancelled write (AbortSignal) rejects with its reason, publishes nothing and removes its temporaries`, async () => {
      const dir = join(tempDir(), "out");
      mkdirSync(dir);
      const scratchDir = tempDir("a3s-scratch-");
      const target = join(dir, `out.${format}`);
      writeFileSync(target, "previous");
      const abort = new AbortController();
      const reason = new Error("cancelled by the test");
      // Cancel as soon as the temporary (or, for the staging formats, the staging copy) exists.
      const watcher = setInterval(() => {
        if (readdirSync(dir).some((n) => n.startsWith(".a3s-")) || readdirSync(scratchDir).length > 0) abort.abort(reason);
      }, 2);
      try {
        await assert.rejects(
          writeOutputs(largeTree(3000), [{ format, path: target }], { epoch: 0, warn: () => {}, signal: abort.signal, scratchDir, force: true }),
          (e) => e === reason,
        );
      } finally {
        clearInterval(watcher);
      }
      assert.ok(abort.signal.aborted, "the write finished before it could be cancelled");
      assert.equal(readFileSync(target, "utf8"), "previous");
      assert.deepEqual(readdirSync(dir), [`out.${format}`]);
      assert.deepEqual(readdirSync(scratchDir), [], "staging copies are removed");
    });
  }

  it("a failing output leaves the previous one untouched and removes its temporary", async () => {
    const dir = tempDir();
    const target = join(dir, "rootfs");
    mkdirSync(target);
    writeFileSync(join(target, "old"), "old");
    const host = join(dir, "vanishing");
    writeFileSync(host, "12345");
    const tree = new RootfsTree();
    tree.addFile("/a", { type: "hostFile", path: host, size: 5 });
    rmSync(host);
    await assert.rejects(writeOutputs(tree, [{ format: "dir", path: target }], { epoch: 0, warn: () => {} }));
    assert.deepEqual(readdirSync(target), ["old"]);
    assert.deepEqual(readdirSync(dir).sort(), ["rootfs"]);
  });

  it("a file that changed size after it was added fails the build with ECONTENT", async () => {
    const dir = tempDir();
    const host = join(dir, "growing");
    writeFileSync(host, "12345");
    const tree = new RootfsTree();
    tree.addFile("/a", { type: "hostFile", path: host, size: 5 });
    writeFileSync(host, "1234567890");
    await assert.rejects(
      writeOutputs(tree, [{ format: "dir", path: join(dir, "out") }], { epoch: 0, warn: () => {} }),
      (e) => isA3sError(e, "ECONTENT"),
    );
    assert.equal(existsSync(join(dir, "out")), false);
  });
});
