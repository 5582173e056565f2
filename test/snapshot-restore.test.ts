// Snapshots with real boots (docs/boot.md, "Snapshots"): a machine saved
// where its init waits for a job, restored again and again. Each restore
// must be its own machine (random state, clock), behave as a cold boot
// does (status, stdout, shares), refuse a snapshot of another image or
// kernel, and leave nothing behind when it is stopped.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { resolveVirtiofsd } from "../src/boot/virtiofsd.js";
import { cacheRoot } from "../src/util/cache-dir.js";
import { makeSnapshot } from "../src/boot/make-snapshot.js";
import { runRootfs, type RunOptions, type RunResult } from "../src/boot/run-vm.js";
import { discardWarmTemplate, listWarmTemplates } from "../src/boot/warm-templates.js";
import { isA3sError } from "../src/errors.js";
import { boot, buildProbeImage, isolateRunDirectories, leftoverVmProcesses } from "./helpers/boot.js";
import { tempDir } from "./helpers/temp-dir.js";

interface ProbeReport {
  realtime_ms: number;
  random?: string;
  argv: string[];
  hostname: string;
  uid: number;
  cwd: string;
  env: string[];
  workspace: { exists: boolean; entries?: string[] };
  writes: { path: string; writable: boolean }[];
  [key: string]: unknown;
}

function report(r: RunResult): ProbeReport {
  return JSON.parse(r.stdout.trim().split("\n")[0] ?? "{}") as ProbeReport;
}

/** The report without what differs from one machine, or one moment, to the next. */
function stable(p: ProbeReport): Record<string, unknown> {
  const { uptime_ms: _u, realtime_ms: _t, random: _r, pid: _p, mounts: _m, ...rest } = p;
  return rest;
}

// Provisioned like a run would (the setup fetched it already): the virtio-fs restore is always tested.
await resolveVirtiofsd({ cache: cacheRoot(), provision: true });

describe("snapshots: one machine saved where init waits, restored again and again", () => {
  const runs = isolateRunDirectories();
  const dir = tempDir();
  let image = "";
  let snapshot = "";
  const restore = (opts: Partial<RunOptions> = {}): Promise<RunResult> => runRootfs({ snapshot, timeoutS: 120, ...opts });

  before(async () => {
    image = await buildProbeImage(dir, "cpio", "rootfs.cpio");
    snapshot = join(dir, "agent.snap");
    const made = await makeSnapshot({ image, output: snapshot, memoryMiB: 256 });
    assert.equal(made.manifest.machine.memoryMiB, 256);
  });

  it("two restores draw different random bytes, read the current time, and end and print as a cold boot does", async () => {
    const args = ["--random", "32", "--exit", "7"];
    const cold = await boot({ image, memoryMiB: 256, args });
    const before = Date.now();
    const first = await restore({ args });
    const second = await restore({ args });
    const after = Date.now();
    for (const r of [cold, first, second]) assert.equal(r.exitCode, 7, r.stderr);
    const [c, a, b] = [cold, first, second].map(report) as [ProbeReport, ProbeReport, ProbeReport];
    // Without its job's entropy a restored machine repeats its template's
    // random stream: two restores sent a job without `entropy` printed the
    // same 32 bytes (the template's generator was seeded by virtio-rng).
    assert.match(a.random ?? "", /^[0-9a-f]{64}$/);
    assert.notEqual(a.random, b.random);
    assert.notEqual(a.random, c.random);
    // Without the job's clock both restores print the template's time (they did, to the millisecond).
    for (const p of [a, b]) assert.ok(p.realtime_ms >= before - 500 && p.realtime_ms <= after + 500, `guest time ${new Date(p.realtime_ms).toISOString()}`);
    assert.deepEqual(stable(a), stable(c));
    assert.deepEqual(stable(b), stable(c));
    assert.equal(first.stdout.trim().split("\n").length, 1, "stdout is only the agent's");
    assert.ok(first.timeline.restoreMs !== null && first.timeline.jobSentMs !== null && first.timeline.agentStartHostMs !== null, JSON.stringify(first.timeline));
    assert.ok(first.timeline.restoreMs <= first.timeline.jobSentMs && first.timeline.jobSentMs <= first.timeline.agentStartHostMs);
    assert.equal(cold.timeline.restoreMs, null);
  });

  it("a restore runs an overlay-mode job: the snapshot's machine keeps the change-set port a boot adds only for overlay mode", async () => {
    const ws = tempDir();
    const r = await restore({ workspace: ws, workspaceMode: "overlay", args: ["--write", "/workspace/from-overlay"] });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.changes?.outcome, "applied", JSON.stringify(r.changes));
    assert.equal(readFileSync(join(ws, "from-overlay"), "utf8"), "a3s-probe\n");
  });

  it("the workspace share works after a restore, and the skills share stays out when not given", async () => {
    const ws = tempDir();
    const r = await restore({ workspace: ws, args: ["--write", "/workspace/from-restore"] });
    assert.equal(r.exitCode, 0, r.stderr);
    const p = report(r);
    assert.deepEqual(p.writes, [{ path: "/workspace/from-restore", writable: true }]);
    assert.equal(readFileSync(join(ws, "from-restore"), "utf8"), "a3s-probe\n");
    const mounts = p.mounts as { target: string }[];
    assert.ok(mounts.some((m) => m.target === "/workspace"));
    assert.ok(!mounts.some((m) => m.target === "/skills"), "the template's skills device, unused here, is not mounted");
  });

  it("refuses a snapshot made for another image or another kernel, before anything runs", async () => {
    const other = await buildProbeImage(tempDir(), "cpio", "other.cpio", (b) => b.withFile("/etc/other", "x"));
    await assert.rejects(restore({ image: other }), (e: unknown) => isA3sError(e, "ESNAPSHOT") && /made from another image/.test(e.message) && e.message.includes(snapshot));
    await assert.rejects(restore({ kernel: "debian" }), (e: unknown) => isA3sError(e, "ESNAPSHOT") && /made with another kernel \(a3s-microvm/.test(e.message));
    await assert.rejects(restore({ memoryMiB: 512 }), (e: unknown) => isA3sError(e, "ESNAPSHOT") && /--memory 256, not 512/.test(e.message));
    // The right image is accepted.
    assert.equal((await restore({ image, args: ["--exit", "0"] })).exitCode, 0);
  });

  it("snapshot -o replaces only a snapshot: a project directory or a file there is refused and kept", async () => {
    const project = join(tempDir(), "project");
    mkdirSync(project);
    writeFileSync(join(project, "main.c"), "int main;\n");
    const notes = join(tempDir(), "notes.txt");
    writeFileSync(notes, "mine\n");
    for (const output of [project, notes]) {
      await assert.rejects(makeSnapshot({ image, output, memoryMiB: 256 }), (e: unknown) => isA3sError(e, "EEXIST") && e.message.includes(output));
    }
    assert.equal(readFileSync(join(project, "main.c"), "utf8"), "int main;\n");
    assert.equal(readFileSync(notes, "utf8"), "mine\n");
  });

  it("a restore stopped while its agent runs leaves no process and no file behind", async () => {
    const abort = new AbortController();
    const out = new Writable({
      write(_chunk, _enc, done) {
        abort.abort(); // the agent has started and printed its report
        done();
      },
    });
    const shmBefore = readdirSync("/dev/shm").filter((n) => n.startsWith("a3s-"));
    await assert.rejects(restore({ args: ["--sleep", "60000"], stdout: out, signal: abort.signal }), (e: unknown) => isA3sError(e, "EABORTED"));
    assert.deepEqual(leftoverVmProcesses(runs), []);
    assert.deepEqual(readdirSync(runs).filter((n) => n.startsWith("a3s-run-")), []);
    assert.deepEqual(readdirSync("/dev/shm").filter((n) => n.startsWith("a3s-")), shmBefore);
    assert.ok(existsSync(join(snapshot, "memory")), "the snapshot itself is untouched");
  });

  describe("run --warm", () => {
    const made: string[] = [];
    after(async () => {
      for (const p of made) await discardWarmTemplate(p);
    });

    it("makes the template on first use and restores it after", async () => {
      const known = new Set((await listWarmTemplates()).templates.map((t) => t.path));
      const progress: string[] = [];
      const first = await runRootfs({ image, warm: true, memoryMiB: 256, args: ["--exit", "5"], progress: (m) => progress.push(m) });
      const fresh = (await listWarmTemplates()).templates.filter((t) => !known.has(t.path)).map((t) => t.path);
      made.push(...fresh);
      assert.equal(fresh.length, 1, progress.join("\n"));
      assert.ok(progress.some((m) => /none yet .* making/.test(m)), progress.join("\n"));
      const again: string[] = [];
      const second = await runRootfs({ image, warm: true, memoryMiB: 256, args: ["--exit", "6"], progress: (m) => again.push(m) });
      assert.equal(first.exitCode, 5, first.stderr);
      assert.equal(second.exitCode, 6, second.stderr);
      assert.ok(!again.some((m) => /making/.test(m)), again.join("\n"));
      assert.ok(second.timeline.restoreMs !== null);
    });
  });

  it("over virtio-fs: the restore's memory is a shared copy, and the workspace works", async () => {
    const vfsSnap = join(dir, "vfs.snap");
    await makeSnapshot({ image, output: vfsSnap, memoryMiB: 256, transport: "virtiofs" });
    const ws = tempDir();
    const r = await runRootfs({ snapshot: vfsSnap, workspace: ws, args: ["--write", "/workspace/vfs"], timeoutS: 120 });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.transport, "virtiofs");
    assert.equal(readFileSync(join(ws, "vfs"), "utf8"), "a3s-probe\n");
  });
});
