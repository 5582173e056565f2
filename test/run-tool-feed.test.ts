// runTool's `feed`: the caller writes the tool's stdin itself (the erofs
// and squashfs outputs feed their tools the tree's tar stream this way).
// Real tools on real pipes.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { buffer } from "node:stream/consumers";
import { describe, it } from "node:test";
import { isA3sError } from "../src/errors.js";
import { tarStream, writeTarStream } from "../src/formats/tar/index.js";
import { bytesContent, RootfsTree } from "../src/tree/index.js";
import { runTool, ToolFailure } from "../src/util/host-tool.js";
import { tempDir } from "./helpers/temp-dir.js";

/** A tree whose tar stream is several MiB, more than a pipe holds, so the feed is still writing when a tool stops. */
function bigTree(): RootfsTree {
  const tree = new RootfsTree({ epoch: 1_000_000_000 });
  for (let i = 0; i < 8; i++) tree.addFile(`/f${i}`, bytesContent(Buffer.alloc(1 << 20, i)));
  return tree;
}

describe("runTool with a feed", () => {
  it("gives the tool every byte the feed writes", async () => {
    const tree = bigTree();
    const expected = createHash("sha256").update(await buffer(tarStream(tree))).digest("hex");
    const { stdout } = await runTool("sha256sum", [], { feed: (stdin) => writeTarStream(tree, stdin, { readerMayStop: true }) });
    assert.equal(stdout.split(" ")[0], expected);
  });

  it("succeeds when the tool stops reading early and exits 0, once the feed has stopped too", async () => {
    let feedSettled = false;
    const { stdout } = await runTool("head", ["-c", "2"], {
      feed: async (stdin) => {
        await writeTarStream(bigTree(), stdin, { readerMayStop: true });
        feedSettled = true;
      },
    });
    assert.equal(stdout, "./"); // the root member's name
    assert.equal(feedSettled, true);
  });

  it("reports the tool's own exit status when it stops reading and fails, not the broken pipe", async () => {
    await assert.rejects(
      runTool("sh", ["-c", "head -c 1 >/dev/null; echo 'bad input' >&2; exit 3"], {
        feed: (stdin) => writeTarStream(bigTree(), stdin, { readerMayStop: true }),
      }),
      (e) => e instanceof ToolFailure && e.status === 3 && /bad input/.test(e.message),
    );
  });

  it("stops the tool and rejects with the feed's error when the content fails", async () => {
    const host = join(tempDir("a3s-feed-"), "shrinks");
    writeFileSync(host, "short");
    const tree = bigTree();
    tree.addFile("/lies", { type: "hostFile", path: host, size: 100_000 });
    // cat would wait for more input for ever: only the kill ends it.
    await assert.rejects(
      runTool("cat", [], { feed: (stdin) => writeTarStream(tree, stdin, { readerMayStop: true }) }),
      (e) => isA3sError(e, "ECONTENT") && /\/lies/.test(e.message),
    );
  });

  it("without readerMayStop, a reader that stops early is the writer's error", async () => {
    const child = spawn("head", ["-c", "1"], { stdio: ["pipe", "ignore", "ignore"] });
    child.stdin.on("error", () => undefined);
    await assert.rejects(writeTarStream(bigTree(), child.stdin), (e) => (e as NodeJS.ErrnoException).code === "EPIPE");
  });
});
