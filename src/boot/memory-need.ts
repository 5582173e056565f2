import { createReadStream } from "node:fs";
import { open, stat } from "node:fs/promises";
import { A3sError } from "../errors.js";
import { decompress } from "../formats/compression/index.js";
import { detectFileFormat } from "../formats/detect.js";

/**
 * How much guest memory a boot needs, worked out before QEMU starts, so a
 * `--memory` too small for the image is refused with the numbers rather
 * than ending in a kernel panic on the console.
 *
 * What the memory holds while the guest boots (all in MiB):
 * - the kernel image: its loaded span, text to the end of bss (`span`);
 *   Linux also keeps 64 bytes of `struct page` for every 4 KiB page of RAM
 *   (1/64 of it);
 * - the initrd as QEMU loaded it (`initrd`), until the kernel has unpacked it;
 * - the unpacked initramfs (`tmpfsPages`, each file rounded up to whole
 *   pages) in the root tmpfs, which Linux sizes to half the RAM left when it
 *   is mounted: the files must fit in that half, so they count twice; and
 *   about 1 KiB of inode and dentry per entry (`entries`);
 * - for a disk image only the small initramfs (init, config, modules): the
 *   disk's own blocks are read into the page cache, which the kernel can
 *   reclaim;
 * - what the kernel allocates for itself at run time, larger for a larger
 *   kernel (`floor` = 21 + span/4, see below).
 *
 * Measured boundaries (TCG, QEMU 10.0 microvm, 4 MiB steps; fails / boots):
 *
 * | kernel (span) | image | fails at | boots at | this model |
 * |---|---|---|---|---|
 * | microVM 6.12 (16.2) | scratch cpio.gz (62 KiB) | 44 | 46 | 37.8 |
 * | microVM 6.12 | 64 MiB random file, cpio.gz and cpio | 212 | 216 | 208.0 |
 * | microVM 6.12 | 64 MiB of zeros, cpio.gz (129 KiB) | 148 | 152 | 143.1 |
 * | microVM 6.12 | 64 MiB random file, erofs | 44 | 46 | 37.8 |
 * | Debian 6.1 (58.0) | scratch cpio.gz + 1 MiB of modules | 96 | 100 | 91.0 |
 * | Debian 6.1 | 64 MiB random file, cpio.gz | 252 | 256 | 253.6 |
 *
 * Below the boundary the kernel panics ("System is deadlocked on memory")
 * or cannot unpack the initramfs ("Initramfs unpacking failed: write
 * error": the root tmpfs is full). The model stays at or below every
 * boundary (the terms for the kernel's own run-time use are fitted to the
 * two scratch rows), so it never calls a boot impossible that works.
 * `run` then asks for MARGIN_MIB more: the boundaries are known to within
 * their 4 MiB steps, and an agent needs room of its own beyond the last
 * page the boot needed (a static probe a few MiB; a real agent far more,
 * which only its author knows).
 */
export const MARGIN_MIB = 16;

export interface MemoryNeed {
  /** The least --memory that boots, by the model above. */
  readonly bootMiB: number;
  /** What `run` requires: bootMiB plus MARGIN_MIB, rounded up. */
  readonly requiredMiB: number;
  readonly parts: {
    readonly kernelSpanMiB: number;
    readonly initrdMiB: number;
    readonly tmpfsMiB: number;
    readonly entries: number;
  };
}

export interface InitramfsFootprint {
  /** Pages of file data once unpacked (each regular file rounded up to 4 KiB). */
  readonly pages: number;
  readonly entries: number;
}

const MIB = 1 << 20;
const PAGE = 4096;

export function memoryNeed(kernelSpanMiB: number, initrdBytes: number, unpacked: InitramfsFootprint): MemoryNeed {
  const initrdMiB = initrdBytes / MIB;
  const tmpfsMiB = (unpacked.pages * PAGE) / MIB;
  const floor = 21 + kernelSpanMiB / 4;
  // 4 MiB below the span: the RAM under the kernel's 16 MiB load address is usable.
  const reserved = Math.max(0, kernelSpanMiB - 4);
  const base = reserved + Math.max(initrdMiB + 2 * tmpfsMiB, floor) + unpacked.entries / 1024;
  const bootMiB = (base * 64) / 63;
  return {
    bootMiB,
    requiredMiB: Math.ceil(bootMiB + MARGIN_MIB),
    parts: { kernelSpanMiB, initrdMiB, tmpfsMiB, entries: unpacked.entries },
  };
}

/** Refuses `memoryMiB` below what the boot needs, saying how much and why. */
export function checkGuestMemory(memoryMiB: number, need: MemoryNeed, image: string, kernel: string): void {
  if (memoryMiB >= need.requiredMiB) return;
  const p = need.parts;
  throw new A3sError(
    "EUSAGE",
    `--memory ${memoryMiB} MiB is too small to boot ${image} with ${kernel}: it needs at least ${need.requiredMiB} MiB ` +
      `(kernel ${p.kernelSpanMiB.toFixed(1)} MiB, initrd ${p.initrdMiB.toFixed(1)} MiB unpacked to ${p.tmpfsMiB.toFixed(1)} MiB ` +
      `in ${p.entries} entries, which the root tmpfs can hold in half the RAM; ${MARGIN_MIB} MiB of room for the agent)`,
    { subject: image, hint: `run with --memory ${need.requiredMiB} or more${p.tmpfsMiB > 32 ? ", or boot the image as erofs or ext4 (a disk image is not held in RAM)" : ""}` },
  );
}

/**
 * The memory a kernel image occupies once loaded: for an ELF (a vmlinux
 * booted through PVH) the span of its PT_LOAD segments by physical address,
 * bss included; for a bzImage its setup header's init_size (boot protocol
 * 2.10+: the memory the kernel needs from its load address). 0 when neither
 * can be read; the model then counts the kernel's run-time floor only.
 */
export async function kernelSpanMiB(path: string): Promise<number> {
  const fh = await open(path, "r");
  try {
    const head = Buffer.alloc(4096);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    if (bytesRead >= 64 && head.readUInt32BE(0) === 0x7f454c46 && head[4] === 2) return elfSpan(head, bytesRead, fh);
    if (bytesRead >= 0x264 && head.toString("latin1", 0x202, 0x206) === "HdrS" && head.readUInt16LE(0x206) >= 0x20a) {
      return head.readUInt32LE(0x260) / MIB;
    }
    return 0;
  } finally {
    await fh.close();
  }
}

async function elfSpan(head: Buffer, headBytes: number, fh: Awaited<ReturnType<typeof open>>): Promise<number> {
  const phoff = Number(head.readBigUInt64LE(0x20));
  const phentsize = head.readUInt16LE(0x36);
  const phnum = head.readUInt16LE(0x38);
  if (phentsize < 56 || phnum > 256) return 0;
  let table = head.subarray(phoff, phoff + phnum * phentsize);
  if (phoff + phnum * phentsize > headBytes) {
    table = Buffer.alloc(phnum * phentsize);
    await fh.read(table, 0, table.length, phoff);
  }
  let low = Infinity;
  let high = 0;
  for (let i = 0; i < phnum; i++) {
    const ph = table.subarray(i * phentsize, (i + 1) * phentsize);
    if (ph.readUInt32LE(0) !== 1) continue; // PT_LOAD
    const paddr = Number(ph.readBigUInt64LE(0x18));
    const memsz = Number(ph.readBigUInt64LE(0x28));
    low = Math.min(low, paddr);
    high = Math.max(high, paddr + memsz);
  }
  return high > low ? (high - low) / MIB : 0;
}

/**
 * What a cpio initramfs unpacks to: data pages and entries, read from the
 * newc headers (file data is skipped, not kept). `from` starts the reading
 * at a byte offset (an archive appended to another); a gzip or zstd file is
 * decompressed on the way, a plain one may hold several archives one after
 * another with NUL padding between them, as the kernel accepts.
 */
export async function initramfsFootprint(path: string, from = 0, limitBytes = Number.MAX_SAFE_INTEGER): Promise<InitramfsFootprint> {
  const size = (await stat(path)).size;
  if (from >= size) return { pages: 0, entries: 0 };
  const format = from === 0 ? await detectFileFormat(path) : "newc";
  const raw = createReadStream(path, { start: from, highWaterMark: 1 << 20 });
  const bytes =
    format === "gzip" || format === "zstd"
      ? decompress(raw, format, { maxBytes: limitBytes, subject: path })
      : (raw as AsyncIterable<Uint8Array>);
  const counted = { pages: 0, entries: 0 };
  try {
    await countNewc(bytes, path, counted);
  } catch (e) {
    // Past the limit (more than the guest's RAM: it cannot fit) there is no
    // need to read on, nor to decompress a bomb to its end.
    if (!(e instanceof A3sError && e.code === "ELIMIT")) throw e;
    counted.pages = Math.max(counted.pages, Math.ceil(limitBytes / PAGE) + 1);
  }
  return counted;
}

async function countNewc(source: AsyncIterable<Uint8Array>, path: string, counted: { pages: number; entries: number }): Promise<void> {
  const input = new ByteStream(source);
  for (;;) {
    // NUL padding between archives (and after the last): skip to the next magic.
    const first = await input.peekNonZero();
    if (first === undefined) return;
    const header = await input.take(110);
    if (!header || !header.toString("latin1", 0, 5).startsWith("07070")) {
      throw new A3sError("ECORRUPT", `${path}: not a newc cpio archive where a header was expected`, { subject: path });
    }
    const field = (i: number): number => parseInt(header.toString("latin1", 6 + i * 8, 14 + i * 8), 16);
    const mode = field(1);
    const fileSize = field(6);
    const nameSize = field(11);
    const name = await input.take(nameSize);
    await input.skip(pad4(110 + nameSize));
    const isTrailer = name?.toString("latin1", 0, nameSize - 1) === "TRAILER!!!";
    if (!isTrailer) {
      counted.entries++;
      if ((mode & 0o170000) === 0o100000) counted.pages += Math.ceil(fileSize / PAGE);
    }
    await input.skip(fileSize + pad4(fileSize));
  }
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

/** Reads an async byte stream by counts: take n bytes, skip n bytes, peek past zeros. */
class ByteStream {
  private chunk: Uint8Array = new Uint8Array(0);
  private pos = 0;
  private readonly it: AsyncIterator<Uint8Array>;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.it = source[Symbol.asyncIterator]();
  }

  private async fill(): Promise<boolean> {
    while (this.pos >= this.chunk.length) {
      const next = await this.it.next();
      if (next.done) return false;
      this.chunk = next.value;
      this.pos = 0;
    }
    return true;
  }

  /** The next non-zero byte, consuming the zeros before it; undefined at the end. */
  async peekNonZero(): Promise<number | undefined> {
    for (;;) {
      if (!(await this.fill())) return undefined;
      while (this.pos < this.chunk.length && this.chunk[this.pos] === 0) this.pos++;
      if (this.pos < this.chunk.length) return this.chunk[this.pos];
    }
  }

  async take(n: number): Promise<Buffer | undefined> {
    const out = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
      if (!(await this.fill())) return undefined;
      const k = Math.min(n - got, this.chunk.length - this.pos);
      out.set(this.chunk.subarray(this.pos, this.pos + k), got);
      got += k;
      this.pos += k;
    }
    return out;
  }

  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      if (!(await this.fill())) return;
      const k = Math.min(left, this.chunk.length - this.pos);
      this.pos += k;
      left -= k;
    }
  }
}
