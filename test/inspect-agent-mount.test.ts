// `inspect` flags an agent path that something the guest init mounts at
// boot hides: /proc, /tmp and the other fixed mounts, and the shares.
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { runCli } from "./helpers/cli.js";
import { compileTestBinary } from "./helpers/static-binary.js";
import { tempDir } from "./helpers/temp-dir.js";

interface Report {
  grade: string;
  findings: { code: string; severity: string; path: string; message: string }[];
}

/** A real A3S rootfs (built by the CLI into a directory), with the agent where the guest config says. */
function builtRootfs(): string {
  const root = join(tempDir(), "rootfs");
  const r = runCli(["build", "--agent", compileTestBinary(), "-o", `dir:${root}`]);
  assert.equal(r.status, 0, r.stderr);
  return root;
}

/** Moves the agent to `to` and points the guest config there. */
function moveAgent(root: string, to: string): void {
  mkdirSync(join(root, to, ".."), { recursive: true });
  renameSync(join(root, "a3s/agent/a3s-box-code"), join(root, to));
  configureAgent(root, to);
}

/** Points the guest config's agent= at `configured`, as `build --agent-path` does. */
function configureAgent(root: string, configured: string): void {
  const conf = join(root, "etc/a3s/guest.conf");
  writeFileSync(conf, readFileSync(conf, "utf8").replace(/^agent=.*$/m, `agent=${configured}`));
}

function inspect(root: string): Report {
  const r = runCli(["inspect", "--json", root]);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Report;
}

const hidden = (report: Report) => report.findings.filter((f) => f.code === "agent-hidden-by-mount");

describe("inspect: an agent a mount hides", () => {
  it("the default agent path is not flagged", () => {
    assert.deepEqual(hidden(inspect(builtRootfs())), []);
  });

  it("an agent under /proc is hidden by proc: a critical finding, and the verdict fails", () => {
    const root = builtRootfs();
    moveAgent(root, "/proc/agent");
    const report = inspect(root);
    assert.deepEqual(
      hidden(report).map((f) => [f.severity, f.path]),
      [["critical", "/proc/agent"]],
    );
    assert.match(hidden(report)[0]!.message, /under \/proc, where init mounts proc at boot/);
    assert.equal(report.grade, "fail");
    const text = runCli(["inspect", root]);
    assert.match(text.stdout, /CRITICAL agent-hidden-by-mount +\/proc\/agent/);
  });

  it("an agent under /workspace, named by a drop-in, is hidden by the workspace share", () => {
    const root = builtRootfs();
    mkdirSync(join(root, "workspace/bin"), { recursive: true });
    renameSync(join(root, "a3s/agent/a3s-box-code"), join(root, "workspace/bin/agent"));
    mkdirSync(join(root, "etc/a3s/guest.conf.d"), { recursive: true });
    writeFileSync(join(root, "etc/a3s/guest.conf.d/10-agent.conf"), "a3s-guest-config 1\nagent=/workspace/bin/agent\n");
    const [f] = hidden(inspect(root));
    assert.match(f?.message ?? "", /the agent path \/workspace\/bin\/agent is under \/workspace, where init mounts the host share workspace at boot/);
  });

  it("an agent whose directory is a symlink into /tmp is hidden by the tmpfs", () => {
    const root = builtRootfs();
    mkdirSync(join(root, "tmp"), { recursive: true });
    renameSync(join(root, "a3s/agent/a3s-box-code"), join(root, "tmp/agent"));
    symlinkSync("/tmp", join(root, "opt"));
    configureAgent(root, "/opt/agent");
    const [f] = hidden(inspect(root));
    assert.match(f?.message ?? "", /the agent path \/opt\/agent \(it leads to \/tmp\/agent\) is under \/tmp, where init mounts a tmpfs/);
  });
});

