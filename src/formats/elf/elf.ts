import { open } from "node:fs/promises";
import { A3sError } from "../../errors.js";
import { withContentBytes, type ByteSource, type ContentRef } from "../../tree/index.js";
import { isElf } from "./magic.js";

/** What the build and the audit need to know about an ELF file, read from its headers. */
export interface ElfInfo {
  readonly bits: 32 | 64;
  readonly littleEndian: boolean;
  /** "exec" (ET_EXEC), "dyn" (ET_DYN: a PIE or a shared library), or another e_type. */
  readonly type: "exec" | "dyn" | "rel" | "core" | "other";
  /** e_machine, e.g. 62 for x86-64, 183 for AArch64. */
  readonly machine: number;
  /** The program interpreter (PT_INTERP), e.g. "/lib64/ld-linux-x86-64.so.2"; undefined for static binaries. */
  readonly interpreter: string | undefined;
  /** DT_NEEDED libraries, in order. */
  readonly needed: readonly string[];
  /** True when nothing has to be loaded with it: no interpreter (static or static-pie). */
  readonly isStatic: boolean;
  /** DT_SONAME: set on shared libraries (and on a few runnable ones, such as ld.so and glibc's libc.so.6). */
  readonly soname?: string;
  /** DT_RUNPATH, split on ":" (searched after LD_LIBRARY_PATH). */
  readonly runpath?: readonly string[];
  /** DT_RPATH, split on ":" (searched first, and only when there is no DT_RUNPATH). */
  readonly rpath?: readonly string[];
  /** DF_1_PIE in DT_FLAGS_1: a position-independent executable rather than a library. */
  readonly pie?: boolean;
}

export const ELF_MACHINES: Readonly<Record<string, number>> = { x64: 62, arm64: 183, ia32: 3, arm: 40, riscv64: 243 };

/**
 * Names for the e_machine values a rootfs is likely to meet (the ELF
 * specification's registry, as glibc's elf.h lists it), so messages say
 * "aarch64", not "machine 183".
 */
const MACHINE_NAMES: Readonly<Record<number, string | { 32: string; 64: string; any: string }>> = {
  2: "sparc",
  3: "x86 (i386)",
  8: "mips",
  18: "sparc32plus",
  20: "powerpc",
  21: "powerpc64",
  22: { 32: "s390", 64: "s390x", any: "s390" },
  40: "arm (32-bit)",
  43: "sparc64",
  50: "ia64",
  62: "x86-64",
  183: "aarch64",
  243: { 32: "riscv32", 64: "riscv64", any: "riscv" },
  258: "loongarch",
};

/** A readable name for an e_machine value (with its number), e.g. "aarch64 (ELF machine 183)". */
export function elfMachineName(machine: number, bits?: 32 | 64): string {
  const known = MACHINE_NAMES[machine];
  const name = typeof known === "object" ? known[bits ?? "any"] : known;
  return name === undefined ? `ELF machine ${machine}` : `${name} (ELF machine ${machine})`;
}

/** The e_machine an executable must have to run on this host's architecture. */
export function hostElfMachine(): number {
  const m = ELF_MACHINES[process.arch];
  if (m === undefined) throw new A3sError("EARCH", `unsupported host architecture ${process.arch}`);
  return m;
}

// Bounds on what hostile headers can make us read.
const MAX_PROGRAM_HEADERS = 4096;
const MAX_INTERP_BYTES = 4096;
const MAX_DYNAMIC_BYTES = 1 << 20;

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NEEDED = 1;
const DT_STRTAB = 5;
const DT_STRSZ = 10;
const DT_SONAME = 14;
const DT_RPATH = 15;
const DT_RUNPATH = 29;
const DT_FLAGS_1 = 0x6ffffffb;
const DF_1_PIE = 0x08000000;

/** Reads an ELF file's headers; returns undefined when the file is not ELF at all. */
export async function readElfFile(path: string): Promise<ElfInfo | undefined> {
  const fh = await open(path, "r");
  try {
    const size = (await fh.stat()).size;
    return await parseElf(
      {
        size,
        async read(offset, length) {
          const buf = Buffer.alloc(length);
          const { bytesRead } = await fh.read(buf, 0, length, offset);
          return buf.subarray(0, bytesRead);
        },
      },
      path,
    );
  } finally {
    await fh.close();
  }
}

/**
 * Like `readElfFile`, for the content of a tree entry. Only the headers, the
 * program interpreter and the dynamic section are read, so a large binary
 * costs a few small reads.
 */
export async function readElfContent(content: ContentRef, subject: string): Promise<ElfInfo | undefined> {
  return withContentBytes(content, subject, (src) => parseElf(src, subject));
}

/** The header fields a parse needs, and how to read words in this file's class and byte order. */
interface ElfReader {
  readonly src: ByteSource;
  readonly bits: 32 | 64;
  readonly littleEndian: boolean;
  u16(b: Buffer, o: number): number;
  u32(b: Buffer, o: number): number;
  /** An address-sized word; an error for a 64-bit value beyond Number's safe range. */
  word(b: Buffer, o: number): number;
  /** Like `word`, but undefined for such a value instead of an error. */
  safeWord(b: Buffer, o: number): number | undefined;
  bad(why: string): A3sError;
}

interface Segment {
  readonly type: number;
  readonly offset: number;
  readonly vaddr: number;
  readonly filesz: number;
}

/** What the dynamic section names. */
interface DynamicInfo {
  readonly needed: string[];
  readonly soname?: string | undefined;
  readonly runpath?: string[] | undefined;
  readonly rpath?: string[] | undefined;
  readonly pie: boolean;
}

/** Reads ELF headers from any random-access byte source; undefined when the bytes are not ELF. */
export async function parseElf(src: ByteSource, subject: string): Promise<ElfInfo | undefined> {
  const ident = await src.read(0, 64);
  if (ident.length < 16 || !isElf(ident)) return undefined;
  const r = elfReader(src, ident, subject);
  const eType = r.u16(ident, 16);
  const type = (["other", "rel", "exec", "dyn", "core"] as const)[eType <= 4 ? eType : 0] ?? "other";
  const machine = r.u16(ident, 18);
  const segments = await readProgramHeaders(r, ident);
  const interpreter = await readInterpreter(r, segments);
  const dyn = await readDynamic(r, segments);
  return {
    bits: r.bits,
    littleEndian: r.littleEndian,
    type,
    machine,
    interpreter,
    needed: dyn.needed,
    isStatic: interpreter === undefined,
    ...(dyn.soname === undefined ? {} : { soname: dyn.soname }),
    ...(dyn.runpath === undefined ? {} : { runpath: dyn.runpath }),
    ...(dyn.rpath === undefined ? {} : { rpath: dyn.rpath }),
    pie: dyn.pie,
  };
}

/** The class and byte order from e_ident, and readers for them. */
function elfReader(src: ByteSource, ident: Buffer, subject: string): ElfReader {
  const bad = (why: string): A3sError => new A3sError("EELF", `${subject}: malformed ELF file: ${why}`, { subject });
  const bits = ident[4] === 2 ? 64 : ident[4] === 1 ? 32 : undefined;
  const littleEndian = ident[5] === 1 ? true : ident[5] === 2 ? false : undefined;
  if (bits === undefined || littleEndian === undefined) throw bad("unknown class or byte order");
  if (ident.length < (bits === 64 ? 64 : 52)) throw bad("truncated header");
  const u16 = (b: Buffer, o: number): number => (littleEndian ? b.readUInt16LE(o) : b.readUInt16BE(o));
  const u32 = (b: Buffer, o: number): number => (littleEndian ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const safeWord = (b: Buffer, o: number): number | undefined => {
    if (bits === 32) return u32(b, o);
    const v = littleEndian ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o);
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? undefined : Number(v);
  };
  const word = (b: Buffer, o: number): number => {
    const v = safeWord(b, o);
    if (v === undefined) throw bad("offset out of range");
    return v;
  };
  return { src, bits, littleEndian, u16, u32, word, safeWord, bad };
}

/** The program header table, bounded (MAX_PROGRAM_HEADERS) and checked to lie inside the file. */
async function readProgramHeaders(r: ElfReader, ident: Buffer): Promise<Segment[]> {
  const phoff = r.word(ident, r.bits === 64 ? 32 : 28);
  const phentsize = r.u16(ident, r.bits === 64 ? 54 : 42);
  const phnum = r.u16(ident, r.bits === 64 ? 56 : 44);
  if (phnum > MAX_PROGRAM_HEADERS) throw r.bad(`${phnum} program headers`);
  if (phnum > 0 && phentsize < (r.bits === 64 ? 56 : 32)) throw r.bad("program header entries too small");
  if (phoff + phnum * phentsize > r.src.size) throw r.bad("program headers past the end of the file");
  const table = await r.src.read(phoff, phnum * phentsize);
  const segments: Segment[] = [];
  for (let i = 0; i < phnum; i++) {
    const o = i * phentsize;
    segments.push(
      r.bits === 64
        ? { type: r.u32(table, o), offset: r.word(table, o + 8), vaddr: r.word(table, o + 16), filesz: r.word(table, o + 32) }
        : { type: r.u32(table, o), offset: r.u32(table, o + 4), vaddr: r.u32(table, o + 8), filesz: r.u32(table, o + 16) },
    );
  }
  return segments;
}

/** The program interpreter PT_INTERP names, if any. */
async function readInterpreter(r: ElfReader, segments: readonly Segment[]): Promise<string | undefined> {
  const interp = segments.find((s) => s.type === PT_INTERP);
  if (!interp) return undefined;
  if (interp.offset + interp.filesz > r.src.size || interp.filesz > MAX_INTERP_BYTES) throw r.bad("PT_INTERP out of bounds");
  const raw = await r.src.read(interp.offset, interp.filesz);
  const nul = raw.indexOf(0);
  return raw.subarray(0, nul < 0 ? raw.length : nul).toString("utf8");
}

/**
 * DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH and DF_1_PIE from the dynamic
 * section. The strings live in DT_STRTAB, a virtual address: it is found
 * through the PT_LOAD segment that maps it. A dynamic section out of bounds
 * or too large is ignored (the file is then reported as needing nothing).
 */
async function readDynamic(r: ElfReader, segments: readonly Segment[]): Promise<DynamicInfo> {
  const dyn = segments.find((s) => s.type === PT_DYNAMIC);
  if (!dyn || dyn.offset + dyn.filesz > r.src.size || dyn.filesz > MAX_DYNAMIC_BYTES) return { needed: [], pie: false };
  const data = await r.src.read(dyn.offset, dyn.filesz);
  const entSize = r.bits === 64 ? 16 : 8;
  const neededOffsets: number[] = [];
  let strtab: number | undefined;
  let strsz = 0;
  let sonameOffset: number | undefined;
  let rpathOffset: number | undefined;
  let runpathOffset: number | undefined;
  let pie = false;
  for (let o = 0; o + entSize <= data.length; o += entSize) {
    // Tags and values are read as unsigned words; a tag too large to be a
    // safe integer is none of the ones looked at here, so it is skipped.
    const tag = r.safeWord(data, o);
    const val = r.safeWord(data, o + entSize / 2);
    if (tag === 0) break;
    if (tag === undefined || val === undefined) continue;
    if (tag === DT_NEEDED) neededOffsets.push(val);
    else if (tag === DT_STRTAB) strtab = val;
    else if (tag === DT_STRSZ) strsz = val;
    else if (tag === DT_SONAME) sonameOffset = val;
    else if (tag === DT_RPATH) rpathOffset = val;
    else if (tag === DT_RUNPATH) runpathOffset = val;
    else if (tag === DT_FLAGS_1) pie = (val & DF_1_PIE) !== 0;
  }
  const load = strtab === undefined ? undefined : segments.find((s) => s.type === PT_LOAD && strtab >= s.vaddr && strtab < s.vaddr + s.filesz);
  if (!load || strtab === undefined || strsz <= 0 || strsz > MAX_DYNAMIC_BYTES) return { needed: [], pie };
  const fileOffset = strtab - load.vaddr + load.offset;
  if (fileOffset + strsz > r.src.size) return { needed: [], pie };
  const strings = await r.src.read(fileOffset, strsz);
  const stringAt = (off: number | undefined): string | undefined => {
    if (off === undefined || off >= strings.length) return undefined;
    const end = strings.indexOf(0, off);
    return strings.subarray(off, end < 0 ? strings.length : end).toString("utf8");
  };
  return {
    needed: neededOffsets.map(stringAt).filter((n): n is string => n !== undefined),
    soname: stringAt(sonameOffset),
    rpath: stringAt(rpathOffset)?.split(":").filter(Boolean),
    runpath: stringAt(runpathOffset)?.split(":").filter(Boolean),
    pie,
  };
}
