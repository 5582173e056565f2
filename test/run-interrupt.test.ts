// `run` under the one cancellation design: a signal stops the VM and its
// helpers, every temporary is removed, and the command exits 128 + N. One
// TCG boot; the build interrupts are in interrupts.test.ts.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { guestProgramPath } from "../src/index.js";
import { leftoverVmProcesses } from "./helpers/boot.js";
import { CLI } from "./helpers/cli.js";
import { tempDir } from "./helpers/temp-dir.js";

describe("an interrupted run stops its VM and cleans up", () => {
  it("run: SIGTERM while the agent runs exits 143, with no QEMU or run directory left", async () => {
    const work = tempDir("a3s-interrupt-run-");
    const tmp = join(work, "tmp");
    mkdirSync(tmp);
    const image = join(work, "rootfs.cpio.gz");
    const built = spawnSync(process.execPath, [CLI, "build", "--agent", guestProgramPath("probe"), "-o", `cpio:${image}`], { env: { ...process.env, TMPDIR: tmp }, encoding: "utf8" });
    assert.equal(built.status, 0, built.stderr);
    const child = spawn(process.execPath, [CLI, "run", image, "-q", "--", "--wait-signal"], { env: { ...process.env, TMPDIR: tmp }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    let ended = false;
    void exited.then(() => (ended = true));
    // The probe prints its report and then waits for a signal: the agent is running in the VM.
    while (!ended && !stdout.includes("\"argv\"")) await new Promise((r) => setTimeout(r, 20));
    assert.ok(!ended, `the run ended before it could be interrupted: ${stderr}`);
    assert.ok(leftoverVmProcesses(tmp).length > 0, "QEMU runs while the agent does");
    child.kill("SIGTERM");
    assert.equal(await exited, 143, stderr);
    assert.match(stderr, /interrupted by SIGTERM/);
    assert.deepEqual(leftoverVmProcesses(tmp), []);
    assert.deepEqual(readdirSync(tmp), [], "the run's directory is removed");
  });
});
