// Change sets (docs/guest-protocol.md §8, docs/security.md "Change sets"):
// what `apply` and an overlay-mode run do with a tar with whiteouts. Hostile
// sets touch nothing outside the workspace (nor, being refused, inside it);
// an apply killed before its commit point applies nothing, one killed after
// it is finished by the next apply. The real CLI, real files; no VM.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { applyChangeSet, finishInterruptedApply } from "../src/boot/change-set-apply.js";
import { JOURNAL_NAME, STAGING_NAME } from "../src/boot/change-set.js";
import { CLI, runCli } from "./helpers/cli.js";
import { member, tar } from "./helpers/raw-tar.js";
import { tempDir } from "./helpers/temp-dir.js";
import { treeListing as listing } from "./helpers/tree-listing.js";

const dir = (name: string, mode = 0o755): Buffer => member({ name: `${name}/`, type: "5", mode });
const file = (name: string, data: string, mode = 0o644): Buffer => member({ name, mode }, data);
const whiteout = (name: string): Buffer => member({ name, mode: 0o600 });
const link = (name: string, target: string): Buffer => member({ name, type: "2", linkName: target, mode: 0o777 });
const hardlink = (name: string, target: string): Buffer => member({ name, type: "1", linkName: target, mode: 0o644 });


/** A workspace and, beside it, a directory the change sets must never touch. */
function setup(): { base: string; ws: string; outside: string } {
  const base = tempDir("a3s-changes-");
  const ws = join(base, "ws");
  const outside = join(base, "outside");
  mkdirSync(join(ws, "keep"), { recursive: true });
  mkdirSync(join(ws, "gone"));
  mkdirSync(join(ws, "opq/old"), { recursive: true });
  mkdirSync(outside);
  writeFileSync(join(ws, "keep/a"), "a");
  writeFileSync(join(ws, "gone/x"), "x");
  writeFileSync(join(ws, "opq/old/y"), "y");
  writeFileSync(join(ws, "opq/z"), "z");
  writeFileSync(join(ws, "edit"), "old");
  writeFileSync(join(outside, "secret"), "secret");
  return { base, ws, outside };
}

function write(base: string, name: string, ...parts: Buffer[]): string {
  const p = join(base, name);
  writeFileSync(p, tar(...parts));
  return p;
}

describe("change sets", () => {
  it("apply: creations, deletions, a replaced file, new trees and an opaque directory", async () => {
    const { base, ws, outside } = setup();
    const set = write(
      base, "set.tar",
      whiteout(".wh.gone"),
      file("edit", "new"),
      dir("t"), dir("t/u"), file("t/u/v", "deep", 0o4755),
      dir("opq"), whiteout("opq/.wh..wh..opq"), file("opq/n", "fresh"),
      link("ln", "keep/a"),
    );
    const r = await applyChangeSet(set, ws);
    assert.deepEqual(listing(ws), {
      edit: "f:new", keep: "d", "keep/a": "f:a", ln: "l:keep/a", opq: "d", "opq/n": "f:fresh", t: "d", "t/u": "d", "t/u/v": "f:deep",
    });
    assert.equal(statSync(join(ws, "t/u/v")).mode & 0o7777, 0o755, "set-id bits never come from a change set");
    assert.deepEqual([r.written, r.removed, r.finishedEarlier], [7, 3, false]);
    assert.deepEqual(listing(outside), { secret: "f:secret" });
  });

  it("a hard link to a file of the set comes back as a hard link, also when a killed apply is run again", async () => {
    const { base, ws } = setup();
    const set = write(base, "set.tar", dir("d"), file("d/f", "shared"), hardlink("d/g", "d/f"), hardlink("h", "d/f"));
    const r = await applyChangeSet(set, ws);
    assert.equal(r.written, 4);
    const f = statSync(join(ws, "d/f"));
    assert.deepEqual([statSync(join(ws, "d/g")).ino, statSync(join(ws, "h")).ino, f.nlink], [f.ino, f.ino, 3]);
    assert.equal(readFileSync(join(ws, "h"), "utf8"), "shared");
    // The journal's steps run again from the start after a kill: the links follow the new file.
    const again = write(base, "again.tar", dir("d"), file("d/f", "second"), hardlink("d/g", "d/f"));
    await killApplyAt("apply-committed", again, ws);
    assert.equal(await finishInterruptedApply(ws), true);
    assert.deepEqual([readFileSync(join(ws, "d/g"), "utf8"), statSync(join(ws, "d/g")).ino], ["second", statSync(join(ws, "d/f")).ino]);
  });

  it("a planted symlink out of the workspace is replaced, never written through, and a whiteout removes only the link", async () => {
    const { base, ws, outside } = setup();
    symlinkSync(outside, join(ws, "escape"));
    symlinkSync(join(outside, "secret"), join(ws, "secret-link"));
    // The set makes "escape" a directory and writes and deletes inside it; the host's symlink must not lead anywhere.
    const set = write(base, "set.tar", dir("escape"), file("escape/pwn", "pwned"), whiteout("escape/.wh.secret"), whiteout(".wh.secret-link"));
    await applyChangeSet(set, ws);
    assert.deepEqual(listing(outside), { secret: "f:secret" });
    assert.equal(lstatSync(join(ws, "escape")).isDirectory(), true);
    assert.equal(readFileSync(join(ws, "escape/pwn"), "utf8"), "pwned");
    assert.equal(existsSync(join(ws, "secret-link")), false);
  });

  for (const [what, parts] of [
    ["a '../' name", [file("../escape", "x")]],
    ["a '../' name deep in the path", [dir("a"), file("a/../../escape", "x")]],
    ["an entry under a symlink of the set", [link("l", "../outside"), file("l/secret", "x")]],
    ["an entry whose directory is not in the set", [file("keep/b", "x")]],
    ["a hard link to a host file", [dir("a"), hardlink("a/h", "edit")]],
    ["a hard link out of the workspace", [hardlink("h", "../outside/secret")]],
    ["a hard link to a file named later in the set", [hardlink("h", "later"), file("later", "x")]],
    ["a hard link to a symlink of the set", [link("l", "../outside/secret"), hardlink("h", "l")]],
    ["a hard link to a directory of the set", [dir("a"), hardlink("h", "a")]],
    ["a hard link to a whiteout of the set", [whiteout(".wh.edit"), hardlink("h", "edit")]],
    ["a device node", [member({ name: "dev", type: "3", devMajor: 1, devMinor: 3 })]],
    ["the same path twice", [file("f", "1"), file("f", "2")]],
    ["a whiteout of a path it also creates", [file("f", "1"), whiteout(".wh.f")]],
    ["the journal's name", [dir(JOURNAL_NAME), file(`${JOURNAL_NAME}/changes.tar`, "x")]],
    ["a whiteout with data", [member({ name: ".wh.edit" }, "data")]],
  ] as const) {
    it(`refuses ${what} and changes nothing, inside or outside`, async () => {
      const { base, ws, outside } = setup();
      const before = listing(base);
      const set = write(base, "hostile.tar", file("first", "applied?"), ...parts);
      const after = { ...before, "hostile.tar": `f:${readFileSync(set, "utf8")}` };
      await assert.rejects(applyChangeSet(set, ws), (e: Error & { code?: string }) => e.code === "ECHANGES" || e.code === "EPATH");
      assert.deepEqual(listing(base), after);
      assert.deepEqual(listing(outside), { secret: "f:secret" });
    });
  }

  it("refuses a set cut short (no end-of-archive marker): nothing applied", async () => {
    const { base, ws } = setup();
    const whole = tar(file("new", "n"), whiteout(".wh.edit"));
    const cut = join(base, "cut.tar");
    writeFileSync(cut, whole.subarray(0, whole.length - 1024));
    await assert.rejects(applyChangeSet(cut, ws), /truncated/);
    assert.equal(readFileSync(join(ws, "edit"), "utf8"), "old");
    assert.equal(existsSync(join(ws, "new")), false);
  });

  it("apply FILE DIR: exit 2 without its operands, 1 with a clear message for a hostile set, --json on success", () => {
    const { base, ws } = setup();
    const usage = runCli(["apply", "only-one"]);
    assert.equal(usage.status, 2, usage.stderr);
    const hostile = runCli(["apply", write(base, "h.tar", file("../x", "x")), ws]);
    assert.equal(hostile.status, 1);
    assert.match(hostile.stderr, /path traversal/);
    assert.match(hostile.stderr, /nothing was applied/);
    const ok = runCli(["apply", write(base, "ok.tar", file("n", "n")), ws, "--json"]);
    assert.equal(ok.status, 0, ok.stderr);
    assert.deepEqual(JSON.parse(ok.stdout), { written: 1, removed: 0, bytes: 1, finishedEarlier: false });
  });

  /** Runs `apply` until it stops at the pause point `at`, then SIGKILLs it. */
  async function killApplyAt(at: string, set: string, ws: string): Promise<void> {
    const child = spawn(process.execPath, [CLI, "apply", set, ws], { env: { ...process.env, A3S_TEST_PAUSE_AT: at }, stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    await new Promise<void>((resolve, reject) => {
      child.stderr.on("data", (b: Buffer) => {
        err += b.toString();
        if (err.includes(`paused at ${at}`)) resolve();
      });
      child.on("exit", () => reject(new Error(`apply exited before ${at}: ${err}`)));
    });
    child.kill("SIGKILL");
    await new Promise((resolve) => child.once("exit", resolve));
  }

  it("an apply killed before its commit point applied nothing; the next apply clears its staging", async () => {
    const { base, ws } = setup();
    const before = listing(ws);
    await killApplyAt("apply-staged", write(base, "set.tar", file("new", "n"), whiteout(".wh.edit")), ws);
    assert.equal(existsSync(join(ws, STAGING_NAME)), true, "the kill left the staging directory");
    assert.deepEqual(Object.fromEntries(Object.entries(listing(ws)).filter(([k]) => !k.startsWith(STAGING_NAME))), before);
    assert.equal(await finishInterruptedApply(ws), false);
    assert.deepEqual(listing(ws), before);
  });

  it("an apply killed after its commit point is finished, whole, by the next apply", async () => {
    const { base, ws } = setup();
    await killApplyAt("apply-committed", write(base, "set.tar", file("new", "n"), whiteout(".wh.edit"), whiteout(".wh.gone")), ws);
    assert.equal(existsSync(join(ws, JOURNAL_NAME)), true, "the kill left the journal");
    const next = runCli(["apply", write(base, "second.tar", file("second", "2")), ws, "--json"]);
    assert.equal(next.status, 0, next.stderr);
    assert.equal((JSON.parse(next.stdout) as { finishedEarlier: boolean }).finishedEarlier, true);
    assert.deepEqual(listing(ws), {
      keep: "d", "keep/a": "f:a", new: "f:n", opq: "d", "opq/old": "d", "opq/old/y": "f:y", "opq/z": "f:z", second: "f:2",
    });
  });
});
