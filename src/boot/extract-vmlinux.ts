import { Readable } from "node:stream";
import { readFile } from "node:fs/promises";
import { A3sError } from "../errors.js";
import { requireTool, runTool } from "../util/host-tool.js";

/**
 * How the kernel build compressed the bzImage payload, told by the payload's
 * first bytes, and the host tool that undoes it (with its Debian package).
 */
const COMPRESSIONS = [
  { name: "gzip", magic: [0x1f, 0x8b], tool: "gzip", pkg: "gzip", args: ["-dc"] },
  { name: "xz", magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], tool: "xz", pkg: "xz-utils", args: ["-dc"] },
  { name: "zstd", magic: [0x28, 0xb5, 0x2f, 0xfd], tool: "zstd", pkg: "zstd", args: ["-dc"] },
  // The kernel writes lz4's legacy frame format (lz4 -l).
  { name: "lz4", magic: [0x02, 0x21, 0x4c, 0x18], tool: "lz4", pkg: "lz4", args: ["-dc"] },
  { name: "bzip2", magic: [0x42, 0x5a, 0x68], tool: "bzip2", pkg: "bzip2", args: ["-dc"] },
  { name: "lzma", magic: [0x5d, 0x00, 0x00], tool: "xz", pkg: "xz-utils", args: ["--format=lzma", "-dc"] },
  { name: "lzo", magic: [0x89, 0x4c, 0x5a, 0x4f], tool: "lzop", pkg: "lzop", args: ["-dc"] },
] as const;

/** The x86 boot protocol's setup header fields used here (Documentation/arch/x86/boot.rst). */
const HDR_SETUP_SECTS = 0x1f1;
const HDR_MAGIC = 0x202; // "HdrS"
const HDR_VERSION = 0x206;
const HDR_PAYLOAD_OFFSET = 0x248;
const HDR_PAYLOAD_LENGTH = 0x24c;
/** payload_offset/payload_length exist from boot protocol 2.08 on. */
const MIN_PROTOCOL = 0x208;
/** Bounds on what a corrupt header can make us decompress. */
const MAX_VMLINUX_BYTES = 1 << 30;

export interface ExtractedKernel {
  /** The uncompressed ELF kernel (with the relocation table the build appends after it). */
  readonly vmlinux: Buffer;
  readonly compression: string;
}

/**
 * The uncompressed ELF `vmlinux` inside an x86 bzImage, as the kernel's own
 * scripts/extract-vmlinux finds it, but by the boot protocol's header
 * rather than a scan for magic numbers: the header says where the
 * compressed payload is and how long, the payload's first bytes say how it
 * was compressed, and its last four bytes (which the kernel build appends)
 * give the uncompressed size, which the result must match.
 *
 * Why: under emulation (TCG) the bzImage's own decompressor spends seconds
 * unpacking ~60 MB in the guest; QEMU can load the ELF directly through its
 * PVH entry point and skip that work altogether.
 */
export async function extractVmlinux(bzImagePath: string): Promise<ExtractedKernel> {
  const image = await readFile(bzImagePath);
  const fail = (why: string): A3sError =>
    new A3sError("EKERNEL", `${bzImagePath}: cannot extract vmlinux: ${why}`, { subject: bzImagePath });
  if (image.length < HDR_PAYLOAD_LENGTH + 4 || image.toString("latin1", HDR_MAGIC, HDR_MAGIC + 4) !== "HdrS") {
    throw fail("not an x86 bzImage (no HdrS setup header)");
  }
  const version = image.readUInt16LE(HDR_VERSION);
  if (version < MIN_PROTOCOL) throw fail(`boot protocol ${version.toString(16)} predates 2.08 and does not locate its payload`);
  // A setup_sects of 0 means 4, for compatibility with ancient kernels.
  const setupBytes = ((image[HDR_SETUP_SECTS] || 4) + 1) * 512;
  const start = setupBytes + image.readUInt32LE(HDR_PAYLOAD_OFFSET);
  const length = image.readUInt32LE(HDR_PAYLOAD_LENGTH);
  if (length < 8 || start + length > image.length) throw fail(`its payload (${length} bytes at ${start}) lies outside the file`);
  const payload = image.subarray(start, start + length);
  const method = COMPRESSIONS.find((c) => c.magic.every((b, i) => payload[i] === b));
  if (!method) throw fail(`unknown payload compression (first bytes ${payload.subarray(0, 6).toString("hex")})`);
  const expected = payload.readUInt32LE(length - 4);
  if (expected > MAX_VMLINUX_BYTES) throw fail(`its header claims an uncompressed size of ${expected} bytes`);

  const tool = requireTool(method.tool, method.pkg);
  const compressed = payload.subarray(0, length - 4);
  const { stdoutBytes: vmlinux } = await runTool(tool, method.args, { input: Readable.from([compressed]) });
  if (vmlinux.length !== expected) {
    throw fail(`${method.name} gave ${vmlinux.length} bytes, but the payload says ${expected}`);
  }
  if (vmlinux.readUInt32BE(0) !== 0x7f454c46) throw fail("the payload is not an ELF file");
  return { vmlinux, compression: method.name };
}

/** Xen's ELF note owner and the note type giving the 32-bit PVH entry point (xen/include/public/elfnote.h). */
const XEN_NOTE_NAME = "Xen";
const XEN_ELFNOTE_PHYS32_ENTRY = 18;
const PT_NOTE = 4;
const MAX_PROGRAM_HEADERS = 256;

/**
 * The kernel's PVH entry point (the physical address in its
 * XEN_ELFNOTE_PHYS32_ENTRY note), or undefined when the ELF has none. QEMU
 * boots an ELF `-kernel` only through this entry (kernels built with
 * CONFIG_PVH=y have it); without it the bzImage must be booted instead.
 */
export function pvhEntryPoint(elf: Buffer): number | undefined {
  // ELF64, little-endian: the only kind an x86-64 kernel is.
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) return undefined;
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = Math.min(elf.readUInt16LE(0x38), MAX_PROGRAM_HEADERS);
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (ph + 56 > elf.length || elf.readUInt32LE(ph) !== PT_NOTE) continue;
    const offset = Number(elf.readBigUInt64LE(ph + 0x08));
    const end = Math.min(offset + Number(elf.readBigUInt64LE(ph + 0x20)), elf.length);
    // Each note: namesz, descsz, type, then the name and the descriptor, each padded to 4 bytes.
    for (let n = offset; n + 12 <= end; ) {
      const namesz = elf.readUInt32LE(n);
      const descsz = elf.readUInt32LE(n + 4);
      const type = elf.readUInt32LE(n + 8);
      const name = n + 12;
      const desc = name + align4(namesz);
      if (desc + descsz > end) break;
      if (type === XEN_ELFNOTE_PHYS32_ENTRY && elf.toString("latin1", name, name + namesz).replace(/\0+$/, "") === XEN_NOTE_NAME) {
        if (descsz === 4) return elf.readUInt32LE(desc);
        if (descsz === 8) return Number(elf.readBigUInt64LE(desc));
      }
      n = desc + align4(descsz);
    }
  }
  return undefined;
}

function align4(n: number): number {
  return (n + 3) & ~3;
}
