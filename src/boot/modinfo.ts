import { A3sError } from "../errors.js";
import { isElf } from "../formats/elf/index.js";

/** What a kernel module says about itself in its .modinfo ELF section. */
export interface ModuleInfo {
  /** The module's name as the kernel knows it (underscores, no extension). */
  readonly name: string;
  /** Modules that must be loaded first ("depends=" in .modinfo). */
  readonly depends: readonly string[];
}

/**
 * Reads the .modinfo section of an uncompressed kernel module (.ko). The
 * section is a run of NUL-terminated "key=value" strings; "name" and
 * "depends" are what ordering needs. Reading it ourselves keeps the host free
 * of kmod and works for any kernel's modules, not just the host's.
 */
export function parseModinfo(ko: Buffer, subject: string): ModuleInfo {
  const bad = (why: string) => new A3sError("EMODULE", `${subject}: not a kernel module: ${why}`, { subject });
  if (ko.length < 64 || !isElf(ko)) throw bad("not ELF");
  if (ko[4] !== 2 || ko[5] !== 1) throw bad("only 64-bit little-endian modules are supported");
  const u64 = (o: number): number => Number(ko.readBigUInt64LE(o));
  const shoff = u64(40);
  const shentsize = ko.readUInt16LE(58);
  const shnum = ko.readUInt16LE(60);
  const shstrndx = ko.readUInt16LE(62);
  if (shentsize < 64 || shoff + shnum * shentsize > ko.length || shstrndx >= shnum) throw bad("bad section table");
  const section = (i: number) => {
    const o = shoff + i * shentsize;
    return { name: ko.readUInt32LE(o), offset: u64(o + 24), size: u64(o + 32) };
  };
  const names = section(shstrndx);
  if (names.offset + names.size > ko.length) throw bad("bad section names");
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const nameEnd = ko.indexOf(0, names.offset + s.name);
    if (ko.toString("latin1", names.offset + s.name, nameEnd) !== ".modinfo") continue;
    if (s.offset + s.size > ko.length) throw bad(".modinfo out of bounds");
    const fields = new Map<string, string>();
    for (const entry of ko.toString("utf8", s.offset, s.offset + s.size).split("\0")) {
      const eq = entry.indexOf("=");
      if (eq > 0 && !fields.has(entry.slice(0, eq))) fields.set(entry.slice(0, eq), entry.slice(eq + 1));
    }
    const name = fields.get("name");
    if (!name) throw bad("no name in .modinfo");
    const depends = (fields.get("depends") ?? "").split(",").filter(Boolean);
    return { name, depends };
  }
  throw bad("no .modinfo section");
}

/** Kernel module names treat "-" and "_" as the same character. */
export function canonicalModuleName(name: string): string {
  return name.replace(/-/g, "_");
}
