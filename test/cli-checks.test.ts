// What the CLI refuses, and when: every value typed on the command line is
// checked before any work (a usage error exits 2), and what used to be
// accepted silently is an error or needs a flag saying so.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { guestProgramPath } from "../src/index.js";
import { runCli } from "./helpers/cli.js";
import { makeImage, makeLayer, writeOciLayout } from "./helpers/test-image.js";
import { tempDir } from "./helpers/temp-dir.js";

const probe = guestProgramPath("probe");

/** A fresh working directory and TMPDIR; `left()` lists what a command left in either. */
function workspace(): { cwd: string; env: NodeJS.ProcessEnv; left: () => string[] } {
  const root = tempDir("a3s-cli-checks-");
  const cwd = join(root, "cwd");
  const tmp = join(root, "tmp");
  mkdirSync(cwd);
  mkdirSync(tmp);
  return { cwd, env: { TMPDIR: tmp, A3S_CACHE_DIR: join(root, "cache") }, left: () => [...readdirSync(cwd), ...readdirSync(tmp).map((n) => `tmp/${n}`)] };
}

describe("usage errors exit 2, before any work", () => {
  // A registry on a port where nothing listens: if the build started its work, it would fail
  // with a connection error (status 1), not with the usage error checked here.
  const unreachable = "docker://127.0.0.1:9/never/pulled:1";
  const cases: [string, string[], RegExp][] = [
    ["a bad --env", ["--env", "NOEQ"], /env: "NOEQ" is not NAME=VALUE/],
    ["a bad --dns", ["--dns", "not-an-ip"], /invalid DNS server address "not-an-ip"/],
    ["a bad --hostname", ["--hostname", "a b"], /invalid hostname "a b"/],
    ["a bad --user", ["--user", "bob"], /invalid user "bob"/],
    ["--init with --no-init", ["--init", probe, "--no-init"], /--init and --no-init contradict each other/],
    ["--no-init with --init", ["--no-init", "--init", probe], /--init and --no-init contradict each other/],
    ["--dns with --no-dns", ["--dns", "1.1.1.1", "--no-dns"], /--dns and --no-dns contradict each other/],
    ["--agent-path over /etc/passwd", ["--agent-path", "/etc/passwd"], /the agent path \/etc\/passwd is a file the A3S layer writes itself/],
    ["--agent-path over /sbin/init", ["--agent-path", "/sbin/init"], /the agent path \/sbin\/init is a file the A3S layer writes itself/],
    ["--agent-path under /proc", ["--agent-path", "/proc/agent"], /is under \/proc, where the guest mounts proc at boot/],
    ["--agent-path under /workspace", ["--agent-path", "/workspace/bin/agent"], /is under \/workspace, where the guest mounts the workspace share/],
    ["--agent-path under /skills", ["--agent-path", "/skills/agent"], /is under \/skills, where the guest mounts the skills share/],
    ["--agent-path under /tmp", ["--agent-path", "/tmp/agent"], /is under \/tmp, where the guest mounts a tmpfs/],
    ["--agent-path in the guest config's directory", ["--agent-path", "/etc/a3s/agent"], /is under \/etc\/a3s, which holds the guest config/],
    ["--agent-path on a layout directory", ["--agent-path", "/etc"], /is a directory of the guest layout/],
    ["a compression a3s-rootfs does not write", ["-o", "cpio:x.cpio.bz2"], /does not write \.bz2 compression/],
    ["two outputs on one path", ["-o", "tar:x", "-o", "cpio:x"], /two outputs write x/],
  ];
  for (const [what, flags, message] of cases) {
    it(`${what}`, () => {
      const w = workspace();
      const r = runCli(["build", unreachable, "--agent", probe, ...flags, ...(flags.includes("-o") ? [] : ["-o", "tar:out.tar"])], { cwd: w.cwd, env: w.env });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /127\.0\.0\.1:9|resolving/, "nothing was fetched");
      assert.deepEqual(w.left(), []);
    });
  }

  it("a bad docker reference", () => {
    const w = workspace();
    const r = runCli(["build", "docker://library/UPPER", "-o", "tar:out.tar"], { cwd: w.cwd, env: w.env });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /invalid image reference "library\/UPPER"/);
  });

  it("run: a bad --env or --user is refused before the host is probed or a VM started", () => {
    const w = workspace();
    const image = join(w.cwd, "image.cpio");
    writeFileSync(image, "not even an image");
    for (const [flags, message] of [
      [["--env", "NOEQ"], /env: "NOEQ" is not NAME=VALUE/],
      [["--user", "bob"], /invalid user "bob"/],
    ] as const) {
      const r = runCli(["run", image, ...flags], { cwd: w.cwd, env: w.env });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, message);
      // The only lines are the error and its hint: no accelerator probe, no image reading, no QEMU.
      assert.deepEqual(r.stderr.trim().split("\n").filter((l) => !/^a3s-rootfs: (error|hint):/.test(l)), []);
    }
  });
});

describe("what used to be accepted silently", () => {
  it("--init with a dynamic program is refused (status 1, naming --allow-dynamic-init); with the flag it is installed", () => {
    const w = workspace();
    const ls = execFileSync("sh", ["-c", "command -v ls"], { encoding: "utf8" }).trim();
    const refused = runCli(["build", "--agent", probe, "--init", ls, "-o", "tar:out.tar"], { cwd: w.cwd, env: w.env });
    assert.equal(refused.status, 1, refused.stderr);
    assert.match(refused.stderr, new RegExp(`the init ${ls} is dynamically linked \\(program interpreter `));
    assert.match(refused.stderr, /--allow-dynamic-init/);
    assert.deepEqual(w.left(), []);
    const allowed = runCli(["build", "--agent", probe, "--init", ls, "--allow-dynamic-init", "-o", "tar:out.tar"], { cwd: w.cwd, env: w.env });
    assert.equal(allowed.status, 0, allowed.stderr);
    const listing = execFileSync("tar", ["-tvf", join(w.cwd, "out.tar"), "sbin/init"], { encoding: "utf8" });
    assert.match(listing, new RegExp(` ${statSync(ls).size} .* sbin/init$`, "m"), "the init installed is ls");
  });

  it("an image whose program is missing: no warning when --agent provides the program, a warning when the image's is used", () => {
    const w = workspace();
    const layout = join(w.cwd, "layout");
    const image = makeImage([makeLayer([{ path: "etc/os-release", content: "ID=test\n" }])], { entrypoint: ["/a3s/agent/a3s-box-code"] });
    writeOciLayout(layout, "v1", image.manifest, [image.config, ...image.layers]);
    const withAgent = runCli(["build", "oci:layout:v1", "--agent", probe, "-o", "tar:out.tar"], { cwd: w.cwd, env: w.env });
    assert.equal(withAgent.status, 0, withAgent.stderr);
    assert.doesNotMatch(withAgent.stderr, /warning/);
    const without = runCli(["build", "oci:layout:v1", "-o", "tar:out2.tar"], { cwd: w.cwd, env: w.env });
    assert.equal(without.status, 1);
    assert.match(without.stderr, /warning: the image's program \/a3s\/agent\/a3s-box-code is not an executable file in the image/);
    assert.match(without.stderr, /no agent/);
  });
});
