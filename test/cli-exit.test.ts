// The CLI exits as soon as its command is done (src/cli/main.ts), without
// waiting for node to free its heap. That must never cut its output short:
// a large report written into a pipe that its reader drains late arrives
// whole, and the command's exit status is kept.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { CLI } from "./helpers/cli.js";
import { tempDir } from "./helpers/temp-dir.js";

/** Runs the CLI with its stdout on a pipe this side does not read from for `pauseMs`. */
async function runWithLateReader(args: string[], pauseMs: number): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  child.stdout.pause();
  let stderr = "";
  child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  await sleep(pauseMs);
  const parts: Buffer[] = [];
  child.stdout.on("data", (b: Buffer) => parts.push(b));
  child.stdout.resume();
  const status = await exited;
  return { status, stdout: Buffer.concat(parts).toString(), stderr };
}

describe("the CLI's exit", () => {
  it("delivers a report many times a pipe's buffer whole to a reader that starts late", async () => {
    const root = join(tempDir("a3s-cli-exit-"), "root");
    mkdirSync(root);
    for (let i = 0; i < 6000; i++) writeFileSync(join(root, `file-with-a-name-long-enough-${i}`), "x");
    const r = await runWithLateReader(["inspect", "--list", "--json", root], 1000);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(r.stdout.length > 4 * 65536, `${r.stdout.length} bytes`);
    const report = JSON.parse(r.stdout) as { entries: number };
    assert.equal(report.entries, 6001);
  });

  it("keeps the status a failed command sets", async () => {
    const r = await runWithLateReader(["inspect", join(tempDir("a3s-cli-exit-"), "missing")], 0);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /a3s-rootfs: error: /);
  });
});
