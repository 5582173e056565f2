import { A3sError } from "../errors.js";
import { elfMachineName, hostElfMachine, readElfFile, type ElfInfo } from "../formats/elf/index.js";

export interface AgentCheckOptions {
  /** Accept an agent that needs a program interpreter (its libraries must then be in the rootfs). */
  readonly allowDynamic?: boolean;
  /** e_machine the guest runs; default: the host's architecture. */
  readonly machine?: number;
}

/**
 * The agent must run in a guest that has no libc: an ELF executable for the
 * target architecture with no program interpreter. A dynamic agent would
 * fail at exec time inside the VM with a bare ENOENT, far from its cause, so
 * the build refuses it here and names the interpreter it asked for.
 */
export async function checkAgentBinary(path: string, opts: AgentCheckOptions = {}): Promise<ElfInfo> {
  const elf = await readElfFile(path);
  if (!elf) {
    throw new A3sError("EAGENT", `the agent ${path} is not an ELF executable`, {
      subject: path,
      hint: "the agent must be a compiled Linux program (a script needs an interpreter the rootfs does not have)",
    });
  }
  const machine = opts.machine ?? hostElfMachine();
  if (elf.machine !== machine) {
    throw new A3sError("EAGENT", `the agent ${path} is built for ${elfMachineName(elf.machine, elf.bits)}, but the guest runs ${elfMachineName(machine)}`, {
      subject: path,
      hint: `build the agent for ${elfMachineName(machine).replace(/ \(ELF machine \d+\)$/, "")}, or boot a guest of its architecture`,
    });
  }
  if (elf.type !== "exec" && elf.type !== "dyn") {
    throw new A3sError("EAGENT", `the agent ${path} is an ELF ${elf.type} file, not an executable`, { subject: path });
  }
  if (!elf.isStatic && !opts.allowDynamic) {
    throw new A3sError(
      "EDYNAMIC",
      `the agent ${path} is dynamically linked (program interpreter ${elf.interpreter}); ` +
        `the rootfs has no shared libraries, so it would not start`,
      { subject: path, hint: "link it statically (e.g. musl-gcc -static), or pass --allow-dynamic-agent" },
    );
  }
  return elf;
}
