// Benchmark: where the A3S init's time goes, init start → agent exec, under
// the microVM kernel (drivers built in, no modules), booted as `run` boots
// it: guest protocol 2 (a3s.job=1), the host answering `a3s ready` with the
// job.
//
// Three kinds of boot per image (scratch cpio and scratch erofs), interleaved:
//   started  as `run` boots: the host writes the job when init holds its
//            control channel for good (init-start; root-ready with a disk),
//            init reads it when it is ready; no debug output. The split
//            from the control lines alone: init-start → ready (init's
//            set-up), ready → job (waiting for the host), job → agent-start
//            (init's run of the job);
//   ready    the host writes the job only when `a3s ready` reaches it (the
//            design before): one round trip through the host inside init's
//            time;
//   named    started, but the channels found by their port names (no
//            a3s.stdout/stderr/control on the command line): init walks
//            sysfs and links /dev/virtio-ports/NAME (the design before);
//   debug    started, with a3s.debug=1: init's progress lines, each with
//            the CLOCK_BOOTTIME it was noted at (init prints them only
//            before it waits and once the agent runs), the step by step
//            split.
//
// Run: npm run build && node dist/bench/init-steps.js
//   INIT_STEPS_RUNS=N boots per image and kind (default 10),
//   INIT_STEPS_KINDS=started,ready,named,debug (the kinds, in this order)
// Writes bench/results/init-steps.{md,json}.
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { chooseAccelerator } from "../src/boot/accelerator.js";
import type { BootMedia } from "../src/boot/boot-media.js";
import { findMicrovmKernel, microvmKernelBundle } from "../src/boot/microvm-kernel-cache.js";
import { kernelCmdlineOptions } from "../src/boot/kernel-bundle.js";
import { kernelCommandLine } from "../src/boot/run-vm.js";
import { cacheRoot } from "../src/util/cache-dir.js";
import { requireTool } from "../src/util/host-tool.js";
import { buildScratchMedia } from "./boot-images.js";
import { bootOnConsole, type ConsoleBoot } from "./boot-vm.js";
import { machineLine, median, writeResults } from "./stats.js";

const RUNS = Number(process.env.INIT_STEPS_RUNS ?? 10);
const say = (m: string): void => void process.stderr.write(`init-steps: ${m}\n`);

type Kind = "started" | "ready" | "named" | "debug";

interface Boot {
  readonly image: string;
  readonly kind: Kind;
  readonly load: number;
  /** Guest clock, ms. */
  readonly initStart: number;
  readonly ready: number;
  readonly job: number | null;
  readonly agentStart: number;
  /** Host clock, ms after QEMU was spawned. */
  readonly readyHost: number | null;
  readonly jobSent: number | null;
  readonly vmmToAgentHost: number;
  /** QEMU's CPU time from the init-start line's arrival to the agent-start line's. */
  readonly qemuCpuInit: number | null;
  /** debug: each progress line, guest ms and text. */
  readonly steps: { ms: number; text: string }[];
}

async function main(): Promise<void> {
  const qemu = requireTool("qemu-system-x86_64", "qemu-system-x86");
  const built = await findMicrovmKernel();
  if (!built) throw new Error("no microVM kernel: run a3s-rootfs kernel build first");
  const kernel = microvmKernelBundle(built);
  const accel = (await chooseAccelerator("auto", qemu, kernel.kernelPath, cacheRoot())).accel;
  const asRun = kernelCmdlineOptions(kernel, accel);
  const cmdline = await kernelCommandLine(accel, { job: true, channelDevices: true, ...asRun });
  const namedCmdline = await kernelCommandLine(accel, { job: true, ...asRun });
  const work = mkdtempSync(join(tmpdir(), "a3s-bench-init-"));
  try {
    const media = await buildScratchMedia(work, kernel);
    const kinds = (process.env.INIT_STEPS_KINDS ?? "started,ready,named,debug").split(",") as Kind[];
    const boots: Boot[] = [];
    const loadAtStart = loadavg();
    for (let round = 1; round <= RUNS; round++) {
      for (const [image, m] of Object.entries(media)) {
        for (const kind of kinds) {
          const b = await bootOnce(image, kind, m, kernel.kernelPath, kind === "named" ? namedCmdline : cmdline, accel, asRun.noAcpi === true);
          if (b) boots.push(b);
        }
      }
      const last = boots.filter((b) => b.kind === kinds[0]).slice(-2);
      say(`round ${round}/${RUNS}: ${last.map((b) => `${b.image} ${(b.agentStart - b.initStart).toFixed(1)} ms`).join(", ")}; load ${loadavg()[0]?.toFixed(2)}`);
    }
    const report = makeReport(boots, { cmdline, kernel: kernel.origin, loadAtStart, loadAtEnd: loadavg() });
    writeResults("init-steps", report.json, report.markdown);
    process.stdout.write(report.markdown + "\n");
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const DEBUG_LINE = /^a3s-init: \[([\d.]+) ms\] (.*)$/;

async function bootOnce(image: string, kind: Kind, media: BootMedia, kernelPath: string, cmdline: string, accel: "kvm" | "tcg", noAcpi: boolean): Promise<Boot | undefined> {
  const load = loadavg()[0] as number;
  let r: ConsoleBoot;
  try {
    r = await bootOnConsole({
      kernelPath,
      initrd: media.initrd,
      ...(media.disk ? { disk: media.disk } : {}),
      cmdline: kind === "debug" ? `${cmdline} a3s.debug=1` : cmdline,
      accel,
      memoryMiB: 512,
      ...(noAcpi ? { noAcpi } : {}),
      probeOn: "stdout-channel",
      timeoutMs: 120_000,
      poweroffGraceMs: 20_000,
      job: kind === "ready" ? "ready" : "started",
    });
  } catch (e) {
    say(`${image} ${kind}: boot failed: ${(e as Error).message}`);
    return undefined;
  }
  const steps = r.consoleLines.flatMap((l) => {
    const m = DEBUG_LINE.exec(l.text);
    return m ? [{ ms: Number(m[1]), text: m[2] as string }] : [];
  });
  if (r.guestInitMs === null || r.guestExecMs === null || r.guestReadyMs === null) {
    say(`${image} ${kind}: a control line is missing`);
    return undefined;
  }
  return {
    image,
    kind,
    load,
    initStart: r.guestInitMs,
    ready: r.guestReadyMs,
    job: r.guestJobMs,
    agentStart: r.guestExecMs,
    readyHost: r.readyHostMs,
    jobSent: r.jobSentMs,
    vmmToAgentHost: r.hostAgentStartMs,
    qemuCpuInit: r.cpuAtInitStartMs !== null && r.cpuAtAgentStartMs !== null ? r.cpuAtAgentStartMs - r.cpuAtInitStartMs : null,
    steps,
  };
}

function fmt(ms: number): string {
  return `${ms.toFixed(1)} ms`;
}

function spread(xs: readonly number[]): string {
  return `${fmt(median(xs))} (${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))})`;
}

/** A debug step's label: its message with the numbers that vary taken out. */
function stepLabel(text: string): string {
  return text.replace(/\d+(\.\d+)?/g, "N").replace(/\(root hash [^)]*\)/, "");
}

function makeReport(
  boots: readonly Boot[],
  ctx: { cmdline: string; kernel: string; loadAtStart: number[]; loadAtEnd: number[] },
): { json: unknown; markdown: string } {
  const images = [...new Set(boots.map((b) => b.image))];
  const kinds = [...new Set(boots.map((b) => b.kind))];
  const loads = boots.map((b) => b.load);
  const md: string[] = [
    "# The A3S init: init start → agent exec, step by step (microVM kernel, job mode)",
    "",
    `${machineLine()}; QEMU microvm, TCG, 1 vCPU, 512 MiB; kernel ${ctx.kernel} (drivers built in, no modules).`,
    `Host load (1-min loadavg, 2 cores, shared with other work): at start ${ctx.loadAtStart[0]?.toFixed(2)}, during the boots median ${median(loads).toFixed(2)}, max ${Math.max(...loads).toFixed(2)}.`,
    `Kernel command line: \`${ctx.cmdline}\` (+ \`a3s.debug=1\` for the debug boots).`,
    "",
    "## The split (guest clock, CLOCK_BOOTTIME; median (min–max) of the boots)",
    "",
    "| image | boots | init start → agent exec | init start → ready (set-up) | ready → job read (host round trip) | job read → agent exec (the run) | init's own work | QEMU CPU time, init-start → agent-start line | VMM start → agent start (host) |",
    "|---|---|---|---|---|---|---|---|---|",
  ];
  const json: Record<string, unknown> = { cmdline: ctx.cmdline, kernel: ctx.kernel, load: { atStart: ctx.loadAtStart, atEnd: ctx.loadAtEnd, median: median(loads) }, cases: [] as unknown[] };
  for (const image of images) {
    for (const kind of kinds) {
      const bs = boots.filter((b) => b.image === image && b.kind === kind);
      if (!bs.length) continue;
      const total = bs.map((b) => b.agentStart - b.initStart);
      const setup = bs.map((b) => b.ready - b.initStart);
      const withJob = bs.filter((b) => b.job !== null) as (Boot & { job: number })[];
      const wait = withJob.map((b) => b.job - b.ready);
      const run = withJob.map((b) => b.agentStart - b.job);
      const own = withJob.map((b) => b.ready - b.initStart + (b.agentStart - b.job));
      const host = bs.map((b) => b.vmmToAgentHost);
      const cpu = bs.flatMap((b) => (b.qemuCpuInit === null ? [] : [b.qemuCpuInit]));
      md.push(
        `| ${image}, ${kind} | ${bs.length} | ${spread(total)} | ${spread(setup)} | ${wait.length ? spread(wait) : "–"} | ${run.length ? spread(run) : "–"} | ${own.length ? spread(own) : "–"} | ${cpu.length ? spread(cpu) : "–"} | ${spread(host)} |`,
      );
      (json.cases as unknown[]).push({ image, kind, boots: bs });
    }
  }
  md.push("", "## Step by step (debug boots; ms since the previous progress line, median)", "");
  for (const image of images) {
    const bs = boots.filter((b) => b.image === image && b.kind === "debug" && b.steps.length);
    if (!bs.length) continue;
    md.push(`### ${image} (${bs.length} boots)`, "", "| step (the line init printed when it was done) | ms since the previous line | at (ms since init start) |", "|---|---|---|");
    const labels = (bs[0] as Boot).steps.map((s) => stepLabel(s.text));
    labels.forEach((label, i) => {
      const deltas: number[] = [];
      const ats: number[] = [];
      for (const b of bs) {
        const s = b.steps[i];
        if (!s || stepLabel(s.text) !== label) continue;
        deltas.push(s.ms - (i === 0 ? b.initStart : (b.steps[i - 1] as { ms: number }).ms));
        ats.push(s.ms - b.initStart);
      }
      if (deltas.length) md.push(`| ${label} | ${fmt(median(deltas))} | ${fmt(median(ats))} |`);
    });
    md.push("");
  }
  md.push(
    "## How it is measured",
    "",
    "- bench/init-steps.ts boots each image with QEMU as `run` does (bench/boot-vm.ts: the argv of qemu-command.ts, no shares), one boot at a time, the kinds interleaved.",
    "- init-start, ready, job and agent-start are init's control lines (docs/guest-protocol.md §7), each carrying CLOCK_BOOTTIME in the guest: init's first instruction, the ready point, the job's `end` line read, the agent's execve done.",
    "- \"init's own work\" = (ready − init start) + (agent exec − job read): the guest's time without the wait for the host.",
    "- The guest's clock runs on while the vCPU thread waits for a host CPU, so on a loaded host every guest-clock column grows with the load. QEMU CPU time (all its threads, from /proc/PID/task/*/schedstat, read when the init-start and agent-start lines reach the bench) is the work itself: it does not count the waits for a CPU, nor the idle vCPU waiting for the job; it does count QEMU's own I/O threads, and is read with the bench's latency in receiving each line (the agent may have run a little by then).",
    "- started, named and debug: the host writes the job when init-start (cpio) or root-ready (erofs) reaches it, as `run` does; ready: when the ready line reaches it.",
    "- named: the command line without the channels' device nodes, so init finds its ports by name in sysfs.",
    "- debug lines are noted in memory with the time and printed when init waits or the agent runs, so the console's cost (the UART is emulated byte by byte) stays out of the steps; the totals to quote are still those of the boots without debug.",
  );
  return { json, markdown: md.join("\n") };
}

await main();
