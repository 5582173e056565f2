import { A3sError } from "../errors.js";
import { elfMachineName, hostElfMachine, readElfFile, type ElfInfo } from "../formats/elf/index.js";

/** Which guest program is checked: the words and the flag its errors name. */
export type GuestProgramRole = "agent" | "init";

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
  return checkGuestProgram(path, "agent", opts);
}

/**
 * The same check for any program the build puts in the guest: the agent,
 * or an init given with `--init` (PID 1 in a guest with no libc: a dynamic
 * one would make the kernel panic at boot, "Requested init failed"). Errors
 * name the role and the flag that accepts a dynamic program.
 */
export async function checkGuestProgram(path: string, role: GuestProgramRole, opts: AgentCheckOptions = {}): Promise<ElfInfo> {
  const code = role === "agent" ? "EAGENT" : "EINIT";
  const elf = await readElfFile(path);
  if (!elf) {
    throw new A3sError(code, `the ${role} ${path} is not an ELF executable`, {
      subject: path,
      hint: `the ${role} must be a compiled Linux program (a script needs an interpreter the rootfs does not have)`,
    });
  }
  const machine = opts.machine ?? hostElfMachine();
  if (elf.machine !== machine) {
    throw new A3sError(code, `the ${role} ${path} is built for ${elfMachineName(elf.machine, elf.bits)}, but the guest runs ${elfMachineName(machine)}`, {
      subject: path,
      hint: `build the ${role} for ${elfMachineName(machine).replace(/ \(ELF machine \d+\)$/, "")}, or boot a guest of its architecture`,
    });
  }
  if (elf.type !== "exec" && elf.type !== "dyn") {
    throw new A3sError(code, `the ${role} ${path} is an ELF ${elf.type} file, not an executable`, { subject: path });
  }
  if (!elf.isStatic && !opts.allowDynamic) {
    throw new A3sError(
      "EDYNAMIC",
      `the ${role} ${path} is dynamically linked (program interpreter ${elf.interpreter}); ` +
        `the rootfs has no shared libraries, so it would not start`,
      { subject: path, hint: `link it statically (e.g. musl-gcc -static), or pass --allow-dynamic-${role}` },
    );
  }
  return elf;
}
