import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { runCli } from "./helpers/cli.js";
import { compileTestBinary } from "./helpers/static-binary.js";
import { tempDir } from "./helpers/temp-dir.js";

describe("a3s-rootfs build", () => {
  it("--json reports the source, entry count and each output with its size and sha256", () => {
    const dir = tempDir();
    const agent = compileTestBinary();
    // Each file output's sha256 is checked against its bytes below: tar and cpio are hashed as they are written, cpio.gz after.
    const outputs = ["dir:rootfs", "tar:rootfs.tar", "cpio:rootfs.cpio.gz", "cpio:rootfs.cpio"];
    const r = runCli(["build", "--agent", agent, ...outputs.flatMap((o) => ["-o", o]), "--json"], { cwd: dir });
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.equal(report.source, "scratch");
    assert.equal(report.entries, 27);
    assert.equal(typeof report.durationMs, "number");
    assert.deepEqual(
      report.outputs.map((o: { format: string; path: string }) => [o.format, o.path]),
      [
        ["dir", join(dir, "rootfs")],
        ["tar", join(dir, "rootfs.tar")],
        ["cpio", join(dir, "rootfs.cpio.gz")],
        ["cpio", join(dir, "rootfs.cpio")],
      ],
    );
    for (const o of report.outputs.slice(1)) {
      const bytes = readFileSync(o.path);
      assert.equal(o.bytes, statSync(o.path).size);
      assert.equal(o.sha256, createHash("sha256").update(bytes).digest("hex"));
    }
    // The dir output's size is its file content, each inode once, as GNU find counts it on disk.
    const listed = execFileSync("find", [join(dir, "rootfs"), "-type", "f", "-printf", "%i %s\n"], { encoding: "utf8" });
    const sizes = new Map(listed.trim().split("\n").map((l) => l.split(" ") as [string, string]));
    assert.equal(report.outputs[0].bytes, [...sizes.values()].reduce((n, b) => n + Number(b), 0));
    assert.ok(report.outputs[0].bytes > statSync(agent).size, "the agent is among the files");
  });

  it("takes --agent-path, --dns, --no-dns and --hostname into the layout", () => {
    const dir = tempDir();
    const agent = compileTestBinary();
    let r = runCli(["build", "--agent", agent, "--agent-path", "/opt/a", "--dns", "9.9.9.9", "--hostname", "box2", "-o", "dir:r"], { cwd: dir });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(join(dir, "r/etc/resolv.conf"), "utf8"), "nameserver 9.9.9.9\n");
    assert.equal(readFileSync(join(dir, "r/etc/hostname"), "utf8"), "box2\n");
    assert.equal(statSync(join(dir, "r/opt/a")).mode & 0o7777, 0o755);
    r = runCli(["build", "--agent", agent, "--no-dns", "-o", "dir:r2"], { cwd: dir });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(join(dir, "r2/etc/resolv.conf"), "utf8"), "");
  });

  it("finds the agent through $A3S_AGENT_BINARY when --agent is not given", () => {
    const dir = tempDir();
    const r = runCli(["build", "-o", "dir:r", "--json"], { cwd: dir, env: { A3S_AGENT_BINARY: compileTestBinary() } });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(statSync(join(dir, "r/a3s/agent/a3s-box-code")).size, statSync(compileTestBinary()).size);
  });

  it("fails with a clear message and status 1 for a dynamic agent, and writes nothing", () => {
    const dir = tempDir();
    const r = runCli(["build", "--agent", compileTestBinary({ static: false }), "-o", "dir:r"], { cwd: dir });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^a3s-rootfs: error: the agent .* is dynamically linked \(program interpreter \/lib/m);
    assert.match(r.stderr, /hint: .*--allow-dynamic-agent/);
    assert.equal(r.stdout, "");
  });

  it("exits 2 on usage errors: a bad -o, an unknown source, an unknown option", () => {
    const agent = compileTestBinary();
    for (const args of [["-o", "iso:x"], ["nosuchsource"], ["--frobnicate"]]) {
      const r = runCli(["build", "--agent", agent, ...args], { cwd: tempDir() });
      assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, /a3s-rootfs: error/);
    }
  });

  it("has --help for the program and each command", () => {
    for (const args of [["--help"], ["build", "--help"], ["inspect", "--help"]]) {
      const r = runCli(args);
      assert.equal(r.status, 0);
      assert.match(r.stdout, /^Usage: a3s-rootfs/);
    }
    assert.match(runCli(["build", "--help"]).stdout, /-o, --output <FORMAT:PATH>/);
  });
});

describe("a3s-rootfs inspect", () => {
  it("lists a built rootfs with kinds, modes, owners, sizes and content hashes", () => {
    const dir = tempDir();
    const agent = compileTestBinary();
    const built = runCli(["build", "--agent", agent, "-o", "dir:r", "-o", "tar:r.tar", "-o", "cpio:r.cpio"], { cwd: dir });
    assert.equal(built.status, 0, built.stderr);
    const agentHash = createHash("sha256").update(readFileSync(agent)).digest("hex");
    for (const target of ["r", "r.tar", "r.cpio"]) {
      const r = runCli(["inspect", target, "--list", "--json"], { cwd: dir });
      assert.equal(r.status, 0, r.stderr);
      const report = JSON.parse(r.stdout);
      const byPath = new Map(report.list.map((e: { path: string }) => [e.path, e]));
      assert.deepEqual(byPath.get("/a3s/agent/a3s-box-code"), {
        path: "/a3s/agent/a3s-box-code", kind: "file", mode: 0o755, uid: 0, gid: 0, size: statSync(agent).size, sha256: agentHash,
      }, target);
      assert.equal((byPath.get("/tmp") as { mode: number }).mode, 0o1777, target);
      assert.equal((byPath.get("/etc/passwd") as { size: number }).size, 71, target);
    }
    const human = runCli(["inspect", "r", "--list"], { cwd: dir });
    assert.match(human.stdout, /^drwxrwxrwt 0\/0 +0 \/tmp$/m);
    assert.match(human.stdout, /^27 entries \(17 directory, 9 file, 1 symlink\)/m);
  });

  it("fails clearly on a missing target", () => {
    const r = runCli(["inspect", "/nonexistent/rootfs"]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /error: \/nonexistent\/rootfs does not exist/);
  });
});
