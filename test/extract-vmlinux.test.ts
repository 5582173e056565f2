// vmlinux extraction from a bzImage and the PVH entry check, on small
// crafted kernels compressed with the real tools (gzip, xz, zstd), plus the
// real Debian kernel when it is in the cache.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { debianKernel } from "../src/boot/debian-kernel.js";
import { extractVmlinux, pvhEntryPoint } from "../src/boot/extract-vmlinux.js";
import { isA3sError } from "../src/index.js";
import { tempDir } from "./helpers/temp-dir.js";

const PVH_ENTRY = 0x1000850;

/** A note: namesz, descsz, type, then name and descriptor, each padded to 4 bytes. */
function note(name: string, type: number, desc: Buffer): Buffer {
  const nameBytes = Buffer.from(name + "\0", "latin1");
  const pad = (b: Buffer): Buffer => Buffer.concat([b, Buffer.alloc((4 - (b.length % 4)) % 4)]);
  const head = Buffer.alloc(12);
  head.writeUInt32LE(nameBytes.length, 0);
  head.writeUInt32LE(desc.length, 4);
  head.writeUInt32LE(type, 8);
  return Buffer.concat([head, pad(nameBytes), pad(desc)]);
}

/** A minimal ELF64 x86-64 executable with one PT_NOTE segment holding `notes`, and some bulk after it. */
function fakeKernelElf(notes: Buffer): Buffer {
  const ehdr = Buffer.alloc(64);
  ehdr.writeUInt32BE(0x7f454c46, 0);
  ehdr[4] = 2; // ELFCLASS64
  ehdr[5] = 1; // little-endian
  ehdr[6] = 1;
  ehdr.writeUInt16LE(2, 0x10); // ET_EXEC
  ehdr.writeUInt16LE(62, 0x12); // x86-64
  ehdr.writeUInt32LE(1, 0x14);
  ehdr.writeBigUInt64LE(0x1000000n, 0x18);
  ehdr.writeBigUInt64LE(64n, 0x20); // e_phoff
  ehdr.writeUInt16LE(64, 0x34);
  ehdr.writeUInt16LE(56, 0x36);
  ehdr.writeUInt16LE(1, 0x38);
  const phdr = Buffer.alloc(56);
  phdr.writeUInt32LE(4, 0); // PT_NOTE
  phdr.writeBigUInt64LE(120n, 0x08);
  phdr.writeBigUInt64LE(BigInt(notes.length), 0x20);
  phdr.writeBigUInt64LE(BigInt(notes.length), 0x28);
  const bulk = Buffer.alloc(200_000, "kernel text ");
  return Buffer.concat([ehdr, phdr, notes, bulk]);
}

const GNU_BUILD_ID = note("GNU", 3, Buffer.alloc(20, 0xab));
const PVH_NOTE = note("Xen", 18, Buffer.from([0x50, 0x08, 0x00, 0x01]));

/** A bzImage around `vmlinux`: a setup header naming the payload, the payload compressed by `tool` plus its size. */
function fakeBzImage(vmlinux: Buffer, tool: "gzip" | "xz" | "zstd", sizeTrailer = vmlinux.length): Buffer {
  const setupSects = 3;
  const setup = Buffer.alloc((setupSects + 1) * 512);
  setup[0x1f1] = setupSects;
  setup.write("HdrS", 0x202, "latin1");
  setup.writeUInt16LE(0x20f, 0x206);
  const compressed = execFileSync(tool, ["-c"], { input: vmlinux, maxBuffer: 1 << 26 });
  const size = Buffer.alloc(4);
  size.writeUInt32LE(sizeTrailer, 0);
  const payload = Buffer.concat([compressed, size]);
  const decompressorStub = Buffer.alloc(100, 0xcc);
  setup.writeUInt32LE(decompressorStub.length, 0x248);
  setup.writeUInt32LE(payload.length, 0x24c);
  return Buffer.concat([setup, decompressorStub, payload, Buffer.alloc(64, 0xcc)]);
}

describe("vmlinux extraction", () => {
  for (const tool of ["gzip", "xz", "zstd"] as const) {
    it(`extracts the exact ELF from a ${tool}-compressed bzImage and finds its PVH entry`, async () => {
      const elf = fakeKernelElf(Buffer.concat([GNU_BUILD_ID, PVH_NOTE]));
      const path = join(tempDir(), "vmlinuz");
      writeFileSync(path, fakeBzImage(elf, tool));
      const out = await extractVmlinux(path);
      assert.equal(out.compression, tool);
      assert.ok(out.vmlinux.equals(elf));
      assert.equal(pvhEntryPoint(out.vmlinux), PVH_ENTRY);
    });
  }

  it("reports no PVH entry for a kernel without the Xen note", () => {
    assert.equal(pvhEntryPoint(fakeKernelElf(GNU_BUILD_ID)), undefined);
    assert.equal(pvhEntryPoint(fakeKernelElf(note("Xen", 17, Buffer.alloc(4)))), undefined, "another Xen note type");
    assert.equal(pvhEntryPoint(Buffer.from("not an ELF file at all, just text of some length.......................")), undefined);
  });

  it("refuses a payload whose decompressed size differs from the size the bzImage records", async () => {
    const elf = fakeKernelElf(PVH_NOTE);
    const path = join(tempDir(), "vmlinuz");
    writeFileSync(path, fakeBzImage(elf, "gzip", elf.length + 1));
    await assert.rejects(extractVmlinux(path), (e) => isA3sError(e, "EKERNEL") && /gave \d+ bytes, but the payload says \d+/.test(e.message));
  });

  it("refuses a file that is not a bzImage", async () => {
    const path = join(tempDir(), "vmlinux");
    writeFileSync(path, fakeKernelElf(PVH_NOTE));
    await assert.rejects(extractVmlinux(path), (e) => isA3sError(e, "EKERNEL") && /no HdrS setup header/.test(e.message));
  });

  it("the cached Debian kernel boots QEMU as a vmlinux with a PVH entry, its bzImage kept", async (t) => {
    const bundle = await debianKernel({ offline: true }).catch(() => undefined);
    if (!bundle) return t.skip("the Debian kernel is not cached (a3s-rootfs kernel --fetch)");
    assert.ok(bundle.bzImagePath && existsSync(bundle.bzImagePath), "the bzImage stays in the bundle");
    assert.ok(bundle.kernelPath.endsWith("/vmlinux"));
    assert.notEqual(pvhEntryPoint(readFileSync(bundle.kernelPath)), undefined);
  });
});
