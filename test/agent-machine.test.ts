// An agent built for another architecture is named by its architecture,
// not by an ELF machine number.
import assert from "node:assert/strict";
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { elfMachineName } from "../src/formats/elf/index.js";
import { runCli } from "./helpers/cli.js";
import { compileTestBinary } from "./helpers/static-binary.js";
import { tempDir } from "./helpers/temp-dir.js";

/** A copy of a real static x86-64 program whose ELF header says `machine` (e_machine, bytes 18-19). */
function programFor(machine: number): string {
  const bytes = readFileSync(compileTestBinary());
  bytes.writeUInt16LE(machine, 18);
  const path = join(tempDir(), `agent-${machine}`);
  writeFileSync(path, bytes);
  chmodSync(path, 0o755);
  return path;
}

describe("an agent for another architecture", () => {
  it("build --agent with an ARM program says aarch64, and what the guest runs", () => {
    const agent = programFor(183);
    const out = join(tempDir(), "rootfs");
    const r = runCli(["build", "--agent", agent, "-o", `dir:${out}`]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`error: the agent ${agent} is built for aarch64 \\(ELF machine 183\\), but the guest runs x86-64 \\(ELF machine 62\\)`));
    assert.match(r.stderr, /hint: build the agent for x86-64/);
  });

  it("names the common architectures, and the number of any other", () => {
    assert.equal(elfMachineName(40), "arm (32-bit) (ELF machine 40)");
    assert.equal(elfMachineName(3), "x86 (i386) (ELF machine 3)");
    assert.equal(elfMachineName(243, 64), "riscv64 (ELF machine 243)");
    assert.equal(elfMachineName(22, 64), "s390x (ELF machine 22)");
    assert.equal(elfMachineName(9999), "ELF machine 9999");
  });
});
