// One cancellation design: only the CLI's command runner listens to process
// signals. A library module that installs a handler (as outputs/atomic.ts
// and the image writers once did) changes how every caller's process dies,
// and skips the caller's own cleanup; this test finds one wherever it is added.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, it } from "node:test";
import { sourceRoot } from "./helpers/import-graph.js";

/** Listening to a signal, or raising one at ourselves, in any of the ways Node allows. */
const SIGNAL_USE = /process\s*\.\s*(on|once|addListener|prependListener|prependOnceListener)\s*\(\s*["'`]SIG|process\s*\.\s*kill\s*\(\s*process\s*\.\s*pid/;
const OWNER = "cli/command-runner.ts";

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

describe("signal ownership", () => {
  const root = sourceRoot();
  const files = sourceFiles(root);

  it("no module but the command runner listens to process signals", () => {
    assert.ok(files.length > 100, `only ${files.length} files read from ${root}`);
    const users = files.filter((f) => SIGNAL_USE.test(readFileSync(f, "utf8"))).map((f) => relative(root, f));
    assert.deepEqual(users, []);
  });

  it("the command runner does, through a list of signals (so the check above can tell)", () => {
    const runner = readFileSync(join(root, OWNER), "utf8");
    assert.match(runner, /ENDING_SIGNALS = \["SIGINT", "SIGTERM", "SIGHUP"\]/);
    assert.match(runner, /process\.on\(sig, handler\)/);
    assert.ok(SIGNAL_USE.test('process.once("SIGINT", f)') && SIGNAL_USE.test("process.kill(process.pid, sig)"), "the pattern finds a handler");
  });
});
