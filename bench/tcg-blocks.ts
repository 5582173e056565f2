// Analysis: how much guest code a boot makes QEMU's TCG translate, and
// where, under the microVM kernel, booted as `run` boots it (job mode).
//
// Under TCG every block of guest code is translated into host code the
// first time it runs, and a boot runs most of its code once. This boots
// the scratch cpio and erofs images with QEMU's `-d in_asm` log (one entry
// per translated block, with the kernel symbol QEMU finds for it) and
// counts the blocks in each phase:
//   before init   the firmware and the kernel, up to init's first instruction
//                 (the first block in init's code);
//   init          init's first instruction → the agent's first (the first
//                 block at the agent's entry point whose bytes are the
//                 agent's): init's own code and the kernel code its system
//                 calls and faults run;
// and lists the kernel functions with the most blocks in init's phase.
// Logging slows those boots, so the times come from as many boots again
// without it: QEMU's CPU time up to the agent-start line, and init start →
// agent exec on the guest's clock, each per block translated in that span
// (translating and running together).
//
// Run: npm run build && node dist/bench/tcg-blocks.js
//   TCG_BLOCKS_RUNS=N logged and unlogged boots per image (default 3)
// Writes bench/results/tcg-blocks.{md,json}.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chooseAccelerator } from "../src/boot/accelerator.js";
import type { BootMedia } from "../src/boot/boot-media.js";
import { kernelCmdlineOptions } from "../src/boot/kernel-bundle.js";
import { findMicrovmKernel, microvmKernelBundle } from "../src/boot/microvm-kernel-cache.js";
import { kernelCommandLine } from "../src/boot/run-vm.js";
import { guestProgramPath } from "../src/programs/index.js";
import { cacheRoot } from "../src/util/cache-dir.js";
import { requireTool } from "../src/util/host-tool.js";
import { buildScratchMedia } from "./boot-images.js";
import { bootOnConsole, type ConsoleBootOptions } from "./boot-vm.js";
import { machineLine, median, writeResults } from "./stats.js";

const RUNS = Number(process.env.TCG_BLOCKS_RUNS ?? 3);
/** Kernel functions listed for init's phase. */
const TOP = 20;
/** Bytes of the agent's entry point compared with a block's, to tell the agent's first block from one of init's at the same address. */
const ENTRY_BYTES = 12;
const say = (m: string): void => void process.stderr.write(`tcg-blocks: ${m}\n`);

/** A static executable's code as loaded: its executable segments' address ranges, and its entry point's address and first bytes. */
interface Program {
  readonly code: readonly { start: number; end: number }[];
  readonly entry: number;
  readonly entryBytes: string;
}

/** One translated block, from the `-d in_asm` log. */
interface Block {
  readonly address: number;
  /** The kernel symbol QEMU named ("" for code outside the kernel's symbol table). */
  readonly symbol: string;
  /** Its first instructions' bytes, hex with spaces, as the log prints them. */
  readonly bytes: string;
}

interface Phases {
  readonly total: number;
  readonly beforeInit: number;
  readonly initOwn: number;
  readonly initKernel: number;
  readonly initTopKernel: readonly { symbol: string; blocks: number }[];
}

interface ImageResult {
  readonly image: string;
  readonly logged: readonly Phases[];
  readonly cpuToAgentMs: readonly number[];
  /** The guest's clock, init start → agent exec (the boot bench's init target). */
  readonly initToAgentMs: readonly number[];
  readonly vmmToAgentMs: readonly number[];
}

async function main(): Promise<void> {
  const qemu = requireTool("qemu-system-x86_64", "qemu-system-x86");
  requireTool("readelf", "binutils");
  const built = await findMicrovmKernel();
  if (!built) throw new Error("no microVM kernel: run a3s-rootfs kernel build first");
  const kernel = microvmKernelBundle(built);
  const accel = (await chooseAccelerator("auto", qemu, kernel.kernelPath, cacheRoot())).accel;
  if (accel !== "tcg") throw new Error(`QEMU runs on ${accel} here: only TCG translates guest code`);
  const asRun = kernelCmdlineOptions(kernel, accel);
  const cmdline = await kernelCommandLine(accel, { job: true, channelDevices: true, ...asRun });
  const init = readProgram(guestProgramPath("init"));
  const agent = readProgram(guestProgramPath("probe"));
  const work = mkdtempSync(join(tmpdir(), "a3s-bench-tcg-"));
  try {
    const media = await buildScratchMedia(work, kernel);
    const results: ImageResult[] = [];
    for (const [image, m] of Object.entries(media)) {
      const boot = (extraArgs?: readonly string[]) =>
        bootOnConsole({ ...bootOptions(kernel.kernelPath, m, cmdline, asRun.noAcpi === true), ...(extraArgs ? { extraArgs } : {}) });
      const logged: Phases[] = [];
      const cpuToAgentMs: number[] = [];
      const initToAgentMs: number[] = [];
      const vmmToAgentMs: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        const log = join(work, `in_asm-${i}.log`);
        await boot(["-d", "in_asm", "-D", log]);
        logged.push(phases(readBlocks(log), init, agent));
        rmSync(log);
        const r = await boot();
        if (r.cpuAtAgentStartMs === null || r.guestInitMs === null || r.guestExecMs === null) throw new Error(`${image}: no init-start or agent-start line`);
        cpuToAgentMs.push(r.cpuAtAgentStartMs);
        initToAgentMs.push(r.guestExecMs - r.guestInitMs);
        vmmToAgentMs.push(r.hostAgentStartMs);
        const p = logged.at(-1) as Phases;
        say(`${image} ${i + 1}/${RUNS}: ${p.beforeInit} blocks before init, ${p.initOwn} + ${p.initKernel} in init's phase; unlogged: QEMU CPU ${r.cpuAtAgentStartMs.toFixed(0)} ms to the agent-start line`);
      }
      results.push({ image, logged, cpuToAgentMs, initToAgentMs, vmmToAgentMs });
    }
    const report = makeReport(results, { cmdline, kernel: kernel.origin });
    writeResults("tcg-blocks", report.json, report.markdown);
    process.stdout.write(report.markdown + "\n");
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function bootOptions(kernelPath: string, media: BootMedia, cmdline: string, noAcpi: boolean): ConsoleBootOptions {
  return {
    kernelPath,
    initrd: media.initrd,
    ...(media.disk ? { disk: media.disk } : {}),
    cmdline,
    accel: "tcg",
    memoryMiB: 512,
    ...(noAcpi ? { noAcpi } : {}),
    probeOn: "stdout-channel",
    job: "started",
    timeoutMs: 120_000,
    poweroffGraceMs: 20_000,
  };
}

/** A static executable's code segments and entry point, from readelf (the guest programs are static, not PIE: loaded where linked). */
function readProgram(path: string): Program {
  const out = execFileSync("readelf", ["-hlW", path], { encoding: "utf8" });
  const entry = Number(/Entry point address:\s+(0x[0-9a-f]+)/.exec(out)?.[1]);
  const code: { start: number; end: number; offset: number }[] = [];
  for (const m of out.matchAll(/^\s*LOAD\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+0x[0-9a-f]+\s+0x[0-9a-f]+\s+(0x[0-9a-f]+)\s+([RWE ]+?)\s+0x/gm)) {
    const [offset, start, size, flags] = [Number(m[1]), Number(m[2]), Number(m[3]), m[4] as string];
    if (flags.includes("E")) code.push({ start, end: start + size, offset });
  }
  const seg = code.find((c) => entry >= c.start && entry < c.end);
  if (!Number.isFinite(entry) || !seg) throw new Error(`${path}: no entry point in an executable segment (readelf -hlW)`);
  const bytes = readFileSync(path).subarray(seg.offset + entry - seg.start, seg.offset + entry - seg.start + ENTRY_BYTES);
  return { code, entry, entryBytes: [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(" ") };
}

/** Each translated block, in order: the `IN: SYMBOL` line and the address and bytes of the instruction lines after it. */
function readBlocks(log: string): Block[] {
  const blocks: Block[] = [];
  let symbol: string | undefined;
  let bytes = "";
  let address = 0;
  const flush = (): void => {
    if (symbol !== undefined && bytes) blocks.push({ address, symbol, bytes });
    symbol = undefined;
    bytes = "";
  };
  for (const line of readFileSync(log, "latin1").split("\n")) {
    if (line.startsWith("IN:")) {
      flush();
      symbol = line.slice(3).trim();
      continue;
    }
    const m = symbol !== undefined ? /^0x([0-9a-f]+):\s+((?:[0-9a-f]{2} )+)/.exec(line) : null;
    if (!m) continue;
    if (!bytes) address = parseInt(m[1] as string, 16);
    bytes += m[2];
  }
  flush();
  return blocks;
}

function phases(blocks: readonly Block[], init: Program, agent: Program): Phases {
  const inInit = (b: Block): boolean => init.code.some((c) => b.address >= c.start && b.address < c.end);
  const start = blocks.findIndex(inInit);
  if (start < 0) throw new Error("no block of init's code in the log");
  const agentStart = blocks.findIndex((b, i) => i > start && b.address === agent.entry && b.bytes.startsWith(agent.entryBytes));
  if (agentStart < 0) throw new Error("no block at the agent's entry point in the log");
  const window = blocks.slice(start, agentStart);
  const kernel = window.filter((b) => b.symbol !== "");
  const bySymbol = new Map<string, number>();
  for (const b of kernel) bySymbol.set(b.symbol, (bySymbol.get(b.symbol) ?? 0) + 1);
  return {
    total: agentStart,
    beforeInit: start,
    initOwn: window.filter(inInit).length,
    initKernel: kernel.length,
    initTopKernel: [...bySymbol].sort((a, b) => b[1] - a[1]).slice(0, TOP).map(([symbol, n]) => ({ symbol, blocks: n })),
  };
}

function makeReport(results: readonly ImageResult[], ctx: { cmdline: string; kernel: string }): { json: unknown; markdown: string } {
  const ms = (x: number): string => `${x.toFixed(1)} ms`;
  const us = (x: number): string => `${x.toFixed(1)} µs`;
  const range = (xs: readonly number[]): string => `${Math.min(...xs)}–${Math.max(...xs)}`;
  const md: string[] = [
    "# What a boot makes TCG translate (microVM kernel, job mode)",
    "",
    `${machineLine()}; QEMU microvm, TCG, 1 vCPU, 512 MiB; kernel ${ctx.kernel}.`,
    `Kernel command line: \`${ctx.cmdline}\`.`,
    "",
    "Blocks: the translations in QEMU's `-d in_asm` log (a block of guest code is translated the first time it runs, and the translation is reused after),",
    `medians of ${RUNS} logged boots per image (min–max). Init's phase runs from init's first instruction to the agent's. CPU time per block:`,
    `QEMU's CPU time up to the agent-start line over the blocks translated up to the agent, and init start → agent exec over the blocks of init's phase`,
    `(medians of ${RUNS} boots without the log, which slows a boot; translating and running together).`,
    "",
    "| image | blocks to the agent | before init | init's phase: init's own code | init's phase: kernel | QEMU CPU time to the agent-start line | per block | init start → agent exec (guest clock) | per block of init's phase | VMM start → agent start |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const r of results) {
    const col = (f: (p: Phases) => number): string => `${median(r.logged.map(f))} (${range(r.logged.map(f))})`;
    const cpu = median(r.cpuToAgentMs);
    const initMs = median(r.initToAgentMs);
    const initBlocks = median(r.logged.map((p) => p.initOwn + p.initKernel));
    md.push(
      `| ${r.image} | ${col((p) => p.total)} | ${col((p) => p.beforeInit)} | ${col((p) => p.initOwn)} | ${col((p) => p.initKernel)} | ${ms(cpu)} | ${us((cpu * 1000) / median(r.logged.map((p) => p.total)))} | ${ms(initMs)} | ${us((initMs * 1000) / initBlocks)} | ${ms(median(r.vmmToAgentMs))} |`,
    );
  }
  for (const r of results) {
    const first = r.logged[0] as Phases;
    md.push(
      "",
      `## ${r.image}: the kernel functions with the most blocks in init's phase (first logged boot)`,
      "",
      "| kernel function | blocks |",
      "|---|---|",
      ...first.initTopKernel.map((t) => `| \`${t.symbol}\` | ${t.blocks} |`),
    );
  }
  return { json: { cmdline: ctx.cmdline, kernel: ctx.kernel, runs: RUNS, results }, markdown: md.join("\n") };
}

await main();
