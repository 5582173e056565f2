import assert from "node:assert/strict";
import { chmodSync, copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { findAgentBinary, isA3sError, readElfFile, RootfsBuilder } from "../src/index.js";
import { checkAgentBinary } from "../src/programs/index.js";
import { compileTestBinary } from "./helpers/static-binary.js";
import { tempDir } from "./helpers/temp-dir.js";

/** Lays out one agent candidate in each place findAgentBinary looks. */
function candidates(): Record<"explicit" | "env" | "home" | "beside" | "path", string> & { programPath: string; homeDir: string; pathDir: string } {
  const root = tempDir();
  const agent = compileTestBinary();
  const place = (dir: string, name = "a3s-box-code"): string => {
    mkdirSync(dir, { recursive: true });
    const p = join(dir, name);
    copyFileSync(agent, p);
    chmodSync(p, 0o755);
    return p;
  };
  const homeDir = join(root, "home");
  const pathDir = join(root, "pathdir");
  return {
    explicit: place(join(root, "explicit"), "my-agent"),
    env: place(join(root, "env"), "agent-from-env"),
    home: place(join(homeDir, "agent")),
    beside: place(join(root, "prog")),
    path: place(pathDir),
    programPath: join(root, "prog", "a3s-rootfs.js"),
    homeDir,
    pathDir,
  };
}

describe("findAgentBinary", () => {
  it("searches explicit path, $A3S_AGENT_BINARY, $A3S_HOME, beside the program, then PATH", async () => {
    const c = candidates();
    const env = { A3S_AGENT_BINARY: c.env, A3S_HOME: c.homeDir, PATH: c.pathDir };
    const programPath = c.programPath;
    assert.equal(await findAgentBinary({ path: c.explicit, env, programPath }), c.explicit);
    assert.equal(await findAgentBinary({ env, programPath }), c.env);
    assert.equal(await findAgentBinary({ env: { A3S_HOME: c.homeDir, PATH: c.pathDir }, programPath }), c.home);
    assert.equal(await findAgentBinary({ env: { PATH: c.pathDir }, programPath }), c.beside);
    assert.equal(await findAgentBinary({ env: { PATH: c.pathDir }, programPath: "/nonexistent/x.js" }), c.path);
  });

  it("passes over files that are not executable regular files, and lists every place tried", async () => {
    const dir = tempDir();
    const notExec = join(dir, "a3s-box-code");
    writeFileSync(notExec, "x");
    chmodSync(notExec, 0o644);
    mkdirSync(join(dir, "home", "agent", "a3s-box-code"), { recursive: true });
    const err = await findAgentBinary({
      env: { A3S_AGENT_BINARY: notExec, A3S_HOME: join(dir, "home"), PATH: join(dir, "empty") },
      programPath: join(dir, "nowhere", "main.js"),
    }).catch((e: unknown) => e);
    assert.ok(isA3sError(err, "ENOAGENT"));
    assert.match(err.message, /\$A3S_AGENT_BINARY: .*a3s-box-code \(not executable\)/);
    assert.match(err.message, /\$A3S_HOME: .*home\/agent\/a3s-box-code \(not a regular file\)/);
    assert.match(err.message, /beside the program: .*nowhere\/a3s-box-code \(does not exist\)/);
    assert.match(err.message, /\$PATH: .*empty\/a3s-box-code \(does not exist\)/);
  });

  it("fails at once when the explicit path is unusable instead of picking another binary", async () => {
    const c = candidates();
    await assert.rejects(
      findAgentBinary({ path: join(c.homeDir, "missing"), env: { A3S_AGENT_BINARY: c.env } }),
      (e) => isA3sError(e, "ENOAGENT") && /missing/.test(e.message),
    );
  });
});

describe("agent checks", () => {
  it("reads static and dynamic ELF headers", async () => {
    const s = await readElfFile(compileTestBinary());
    assert.equal(s?.isStatic, true);
    const d = await readElfFile(compileTestBinary({ static: false }));
    assert.equal(d?.isStatic, false);
    assert.match(d?.interpreter ?? "", /^\/lib.*\/ld-linux.*\.so/);
    assert.ok(d?.needed.includes("libc.so.6"));
    assert.equal(await readElfFile("/etc/passwd"), undefined);
  });

  it("refuses a dynamically linked agent, naming its interpreter, unless allowed", async () => {
    const dynamic = compileTestBinary({ static: false });
    const elf = await readElfFile(dynamic);
    const err = await new RootfsBuilder().withAgentBinary(dynamic).buildTree().catch((e: unknown) => e);
    assert.ok(isA3sError(err, "EDYNAMIC"));
    assert.ok(err.message.includes(elf?.interpreter as string), err.message);
    const tree = await new RootfsBuilder().withAgentBinary(dynamic, { allowDynamic: true }).buildTree();
    assert.equal(tree.lookup("/a3s/agent/a3s-box-code")?.kind, "file");
  });

  it("refuses a non-ELF agent and one for another architecture", async () => {
    const dir = tempDir();
    const script = join(dir, "agent.sh");
    writeFileSync(script, "#!/bin/sh\necho hi\n");
    chmodSync(script, 0o755);
    await assert.rejects(checkAgentBinary(script), (e) => isA3sError(e, "EAGENT") && /not an ELF/.test(e.message));
    await assert.rejects(
      checkAgentBinary(compileTestBinary(), { machine: 183 }),
      (e) => isA3sError(e, "EAGENT") && /machine 62/.test(e.message),
    );
  });
});
