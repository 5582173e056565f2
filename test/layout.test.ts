import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isA3sError, readContent, RootfsBuilder, type RootfsTree } from "../src/index.js";
import { renderGuestConfig } from "../src/layout/guest-config.js";
import { compileTestBinary } from "./helpers/static-binary.js";

async function text(tree: RootfsTree, path: string): Promise<string> {
  const inode = tree.lookup(path);
  assert.ok(inode?.kind === "file", `${path} is a file`);
  return (await readContent(inode.content, path)).toString();
}

describe("the scratch guest layout", () => {
  it("has exactly the A3S directories, files, init and agent, all owned 0:0", async () => {
    const agent = compileTestBinary();
    const tree = await new RootfsBuilder().withAgentBinary(agent).buildTree();
    const listing = tree.entries().map((e) => `${e.kind} ${e.inode.mode.toString(8)} ${e.path}`);
    assert.deepEqual(listing, [
      "directory 755 /",
      "directory 755 /a3s",
      "directory 755 /a3s/agent",
      "file 755 /a3s/agent/a3s-box-code",
      "directory 755 /dev",
      "directory 755 /etc",
      "directory 755 /etc/a3s",
      "file 644 /etc/a3s/guest.conf",
      "file 644 /etc/group",
      "file 644 /etc/hostname",
      "file 644 /etc/hosts",
      "file 644 /etc/nsswitch.conf",
      "file 644 /etc/passwd",
      "file 644 /etc/resolv.conf",
      "symlink 777 /init",
      "directory 755 /proc",
      "directory 755 /root",
      "directory 755 /run",
      "directory 755 /sbin",
      "file 755 /sbin/init",
      "directory 755 /skills",
      "directory 755 /sys",
      "directory 1777 /tmp",
      "directory 755 /var",
      "directory 755 /var/log",
      "directory 1777 /var/tmp",
      "directory 755 /workspace",
    ]);
    assert.ok(tree.entries().every((e) => e.inode.uid === 0 && e.inode.gid === 0));
  });

  it("writes the essential /etc files byte for byte", async () => {
    const tree = await new RootfsBuilder().withAgentBinary(compileTestBinary()).buildTree();
    assert.equal(await text(tree, "/etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n");
    assert.equal(await text(tree, "/etc/group"), "root:x:0:\nnogroup:x:65534:\n");
    assert.equal(await text(tree, "/etc/hosts"), "127.0.0.1 localhost\n::1 localhost\n");
    assert.equal(await text(tree, "/etc/resolv.conf"), "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    assert.equal(await text(tree, "/etc/nsswitch.conf"), "passwd: files\ngroup: files\nhosts: files dns\n");
    assert.equal(await text(tree, "/etc/hostname"), "a3s-box\n");
  });

  it("bakes the agent's path, arguments, environment, user and the optional shares into the guest config", async () => {
    const tree = await new RootfsBuilder()
      .withAgentBinary(compileTestBinary())
      .withLayout({ agentPath: "/opt/agent" })
      .withAgentArgs(["--task", "fix the tests"])
      .withAgentEnv(["HOME=/workspace"])
      .withAgentUser("nobody")
      .buildTree();
    assert.equal(
      await text(tree, "/etc/a3s/guest.conf"),
      [
        "a3s-guest-config 1",
        "agent=/opt/agent",
        "arg=--task",
        "arg=fix the tests",
        "env=HOME=/workspace",
        "cwd=/workspace",
        "user=65534:65534",
        "hostname=a3s-box",
        "share=workspace:/workspace:rw,optional",
        "share=skills:/skills:ro,optional",
        "",
      ].join("\n"),
    );
  });

  it("leaves the init out when asked to", async () => {
    const tree = await new RootfsBuilder().withAgentBinary(compileTestBinary()).withInit(false).buildTree();
    assert.equal(tree.lookup("/sbin/init"), undefined);
    assert.equal(tree.lookup("/init", false), undefined);
  });

  it("takes paths, DNS, hostname and extra entries from a GuestLayout", async () => {
    const tree = await new RootfsBuilder()
      .withAgentBinary(compileTestBinary())
      .withLayout({
        agentPath: "/opt/agent/bin/run",
        workspacePath: "/home/work",
        skillsPath: "/srv/skills",
        hostname: "sandbox-1",
        dns: ["1.1.1.1"],
        extraDirectories: [{ path: "/data", mode: 0o700 }],
        extraFiles: [{ path: "/etc/motd", content: "hi\n" }],
      })
      .withFile("/etc/agent.json", "{}", { mode: 0o600 })
      .buildTree();
    assert.equal(tree.lookup("/opt/agent/bin/run")?.mode, 0o755);
    assert.equal(tree.lookup("/a3s/agent/a3s-box-code"), undefined);
    assert.equal(tree.lookup("/home/work")?.kind, "directory");
    assert.equal(tree.lookup("/srv/skills")?.kind, "directory");
    assert.equal(tree.lookup("/workspace"), undefined);
    assert.equal(tree.lookup("/data")?.mode, 0o700);
    assert.equal(await text(tree, "/etc/motd"), "hi\n");
    assert.equal(tree.lookup("/etc/agent.json")?.mode, 0o600);
    assert.equal(await text(tree, "/etc/hostname"), "sandbox-1\n");
    assert.equal(await text(tree, "/etc/resolv.conf"), "nameserver 1.1.1.1\n");
  });

  it("writes a resolv.conf with no nameserver when DNS is off", async () => {
    const tree = await new RootfsBuilder().withAgentBinary(compileTestBinary()).withLayout({ dns: [] }).buildTree();
    assert.equal(await text(tree, "/etc/resolv.conf"), "");
  });

  it("rejects a bad hostname, DNS address or agent path before building", async () => {
    for (const layout of [{ hostname: "bad name" }, { dns: ["not-an-ip"] }, { agentPath: "/" }, { agentPath: "../x" }]) {
      await assert.rejects(
        new RootfsBuilder().withAgentBinary(compileTestBinary()).withLayout(layout).buildTree(),
        (e) => isA3sError(e),
        JSON.stringify(layout),
      );
    }
  });

  it("takes hostnames up to Linux's 64 bytes, in the layout and in the guest config alike", async () => {
    const longest = "h".repeat(64);
    const tree = await new RootfsBuilder().withAgentBinary(compileTestBinary()).withLayout({ hostname: longest }).buildTree();
    assert.equal(await text(tree, "/etc/hostname"), `${longest}\n`);
    assert.match(await text(tree, "/etc/a3s/guest.conf"), new RegExp(`^hostname=${longest}$`, "m"));
    await assert.rejects(
      new RootfsBuilder().withAgentBinary(compileTestBinary()).withLayout({ hostname: longest + "h" }).buildTree(),
      (e) => isA3sError(e, "ELAYOUT") && /at most 64/.test(e.hint ?? ""),
    );
    assert.throws(() => renderGuestConfig({ hostname: longest + "h" }), (e) => isA3sError(e, "ECONFIG"));
  });
});
