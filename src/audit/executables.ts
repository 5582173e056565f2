import { isA3sError } from "../errors.js";
import { isElf, parseElf, type ElfInfo } from "../formats/elf/index.js";
import type { ByteSource } from "../tree/index.js";

/**
 * What an executable-mode file is, from its first bytes: an ELF program, an
 * ELF shared library, a script the kernel starts through a "#!" interpreter,
 * or none of these (data with an x bit, which exec would refuse).
 */
export type ExecutableClass =
  | { readonly kind: "program" | "library"; readonly elf: ElfInfo }
  | { readonly kind: "script"; readonly interpreter: string; readonly argument?: string }
  | { readonly kind: "malformed-elf"; readonly reason: string }
  | { readonly kind: "other" };

/** The kernel reads at most this much of a "#!" line (BINPRM_BUF_SIZE). */
export const SHEBANG_MAX_BYTES = 256;

/**
 * Classifies a file by its content. Bounded: the first 256 bytes, then for
 * ELF only the headers and the dynamic section (see parseElf).
 *
 * An ELF file counts as a library when it is ET_DYN with a DT_SONAME and is
 * not flagged DF_1_PIE: that is what linkers put in shared objects, while a
 * PIE program has no soname. glibc's libc.so.6 and ld.so can be run too, but
 * they are in a rootfs to be loaded, so they count as libraries.
 */
export async function classifyExecutable(src: ByteSource, head: Buffer, subject: string): Promise<ExecutableClass> {
  if (isElf(head)) {
    let elf: ElfInfo | undefined;
    try {
      elf = await parseElf(src, subject);
    } catch (e) {
      if (isA3sError(e, "EELF")) return { kind: "malformed-elf", reason: e.message };
      throw e;
    }
    if (!elf) return { kind: "other" };
    if (elf.type !== "exec" && elf.type !== "dyn") return { kind: "other" };
    const library = elf.type === "dyn" && elf.soname !== undefined && !elf.pie;
    return { kind: library ? "library" : "program", elf };
  }
  if (head.length >= 2 && head[0] === 0x23 && head[1] === 0x21) return parseShebang(head);
  return { kind: "other" };
}

/**
 * "#!INTERPRETER [ARGUMENT]" as the kernel splits it: blanks after "#!" are
 * skipped, the interpreter ends at the first blank, and the rest of the line
 * (trimmed) is one argument. A line with no interpreter is not executable.
 */
function parseShebang(head: Buffer): ExecutableClass {
  const end = head.indexOf(0x0a);
  const line = head.subarray(2, end < 0 ? Math.min(head.length, SHEBANG_MAX_BYTES) : end).toString("utf8");
  const trimmed = line.replace(/^[ \t]+/, "").replace(/[ \t\r]+$/, "");
  if (trimmed === "") return { kind: "other" };
  const blank = trimmed.search(/[ \t]/);
  if (blank < 0) return { kind: "script", interpreter: trimmed };
  const argument = trimmed.slice(blank).replace(/^[ \t]+/, "");
  return { kind: "script", interpreter: trimmed.slice(0, blank), ...(argument ? { argument } : {}) };
}
