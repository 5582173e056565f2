// The boot benchmark's results: medians, ratios, the targets, as Markdown
// and JSON (bench/results/boot.{md,json}). Only arithmetic on what boot.ts
// measured; what each number means is written beside it.
import type { ConsoleBoot } from "./boot-vm.js";
import { machineLine, median } from "./stats.js";

export interface BootRun extends Omit<ConsoleBoot, "consoleLines"> {
  /** The host's 1-minute load average when the boot started. */
  readonly load: number;
}

export interface BootCase {
  readonly kernel: "debian" | "microvm";
  readonly kernelOrigin: string;
  readonly label: string;
  readonly image: string;
  readonly init: "a3s" | "systemd";
  readonly kernelPath: string;
  readonly initrd: string;
  readonly disk?: string;
  /** Booted through QEMU's default firmware instead of qboot (boot-vm.ts). */
  readonly firmware?: "default";
  readonly bytes: number;
  readonly runs: BootRun[];
  readonly failures: string[];
}

export interface LoopResult {
  readonly kernel: "debian" | "microvm";
  readonly kernelOrigin: string;
  readonly boots: number;
  /**
   * hostWaitMs: init's wait for its job (ready → job, guest clock), part of initToAgentMs.
   * hostSetupMs: from runRootfs's call to QEMU's start (the kernel found, virtiofsd started, the boot media made).
   */
  readonly runs: { agentStartHostMs: number; initToAgentMs: number; hostWaitMs: number; vmExitMs: number; hostSetupMs: number }[];
  readonly failures: string[];
  transport: string;
  readonly load: number[];
}

export interface BootReportInput {
  readonly accel: string;
  /** Each kernel's command line, as markdown (the kernels' lines differ: kernel-cmdline.ts). */
  readonly cmdline: string;
  readonly memoryMiB: number;
  readonly runs: number;
  readonly cases: readonly BootCase[];
  readonly loops: readonly LoopResult[];
  readonly load: { atStart: number[]; atEnd: number[] };
  readonly roundsSeconds: number;
  readonly qemuVersion: string;
  readonly images: { systemdPackages: number; systemdEntries: number };
}

/** VMM start → agent start: the agent-start line leaving the guest (A3S init), else the probe's first output at the host (systemd). */
function agentStart(c: BootCase, r: BootRun): number {
  return c.init === "a3s" && r.agentStartMs !== null ? r.agentStartMs : r.hostAgentStartMs;
}

function stat(xs: readonly number[]): { median: number; min: number; max: number; n: number } {
  return xs.length ? { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length } : { median: NaN, min: NaN, max: NaN, n: 0 };
}

function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number) : NaN;
}

function ms(x: number): string {
  if (!Number.isFinite(x)) return "–";
  return x >= 10_000 ? `${(x / 1000).toFixed(1)} s` : x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(0)} ms`;
}

function ms1(x: number): string {
  return Number.isFinite(x) ? `${x.toFixed(1)} ms` : "–";
}

function range(s: { min: number; max: number }): string {
  return `${ms(s.min)}–${ms(s.max)}`;
}

/**
 * Init's own time, its first instruction to the agent's execve, on the
 * guest's clock (boot-vm.ts: the init-start line is written after that
 * first instruction, once the channels are open). Subtracted from the
 * agent-start line's host time, it places init's start on the host clock.
 */
function initOwnMs(r: BootRun): number {
  return r.guestInitMs === null || r.guestExecMs === null ? NaN : r.guestExecMs - r.guestInitMs;
}

/** Of init's own time, the wait for the host's job (ready → job, guest clock); 0 when init ran without a job. */
function hostWaitMs(r: BootRun): number {
  return r.guestReadyMs === null || r.guestJobMs === null ? 0 : r.guestJobMs - r.guestReadyMs;
}

/** Median of a per-run difference, skipping runs where either end is missing. */
function medianOf(runs: readonly BootRun[], f: (r: BootRun) => number | null): number {
  const xs = runs.map(f).filter((x): x is number => x !== null && Number.isFinite(x));
  return xs.length ? median(xs) : NaN;
}

function find(cases: readonly BootCase[], kernel: string, image: string): BootCase | undefined {
  return cases.find((c) => c.kernel === kernel && c.image === image);
}

export function bootReport(input: BootReportInput): { markdown: string; json: unknown } {
  const { cases, loops } = input;
  const loads = [...cases.flatMap((c) => c.runs.map((r) => r.load)), ...loops.flatMap((l) => l.load)];
  const startOf = (c: BootCase | undefined): number => (c ? stat(c.runs.map((r) => agentStart(c, r))).median : NaN);
  const probeOf = (c: BootCase | undefined): number => (c ? stat(c.runs.map((r) => r.hostAgentStartMs)).median : NaN);

  const mainRows = cases.map((c) => {
    const s = stat(c.runs.map((r) => agentStart(c, r)));
    const probe = stat(c.runs.map((r) => r.hostAgentStartMs));
    return `| ${c.kernel} | ${c.image} | ${c.init === "a3s" ? "A3S init" : "systemd"} | **${ms(s.median)}** | ${range(s)} | ${ms(probe.median)} | ${ms(medianOf(c.runs, (r) => r.cpuAtProbeMs))} | ${c.runs.length}/${c.runs.length + c.failures.length} |`;
  });
  const timelineRows = cases.map((c) => {
    const ready = medianOf(c.runs, (r) => r.qemuReadyMs);
    const entry = medianOf(c.runs, (r) => r.kernelEntryMs);
    if (c.init !== "a3s") {
      return `| ${c.kernel} | ${c.image} | ${ms(ready)} | ${ms(entry)} | ${ms(medianOf(c.runs, (r) => (r.kernelEntryMs === null ? null : r.hostAgentStartMs - r.kernelEntryMs)))} (to the probe's report) | – | – |`;
    }
    const kernel = medianOf(c.runs, (r) => (r.agentStartMs === null || r.kernelEntryMs === null ? null : r.agentStartMs - initOwnMs(r) - r.kernelEntryMs));
    const init = medianOf(c.runs, initOwnMs);
    const wait = medianOf(c.runs, hostWaitMs);
    const report = medianOf(c.runs, (r) => (r.agentStartMs === null ? null : r.hostAgentStartMs - r.agentStartMs));
    return `| ${c.kernel} | ${c.image} | ${ms(ready)} | ${ms(entry)} | ${ms(kernel)} | ${ms1(init)} (waiting for the job ${ms1(wait)}) | ${ms(report)} |`;
  });

  const speedups = ["scratch cpio", "scratch erofs", "systemd"].map((image) => {
    const d = image === "systemd" ? probeOf(find(cases, "debian", image)) : startOf(find(cases, "debian", image));
    const m = image === "systemd" ? probeOf(find(cases, "microvm", image)) : startOf(find(cases, "microvm", image));
    return { image, debian: d, microvm: m, ratio: d / m };
  });
  const systemdRatios = (["debian", "microvm"] as const).map((k) => {
    const scratch = probeOf(find(cases, k, "scratch cpio"));
    const systemd = probeOf(find(cases, k, "systemd"));
    return { kernel: k, scratch, systemd, ratio: systemd / scratch };
  });
  const bz = find(cases, "debian", "scratch cpio (bzImage)");
  const seabios = cases.find((c) => c.firmware === "default");
  const loopRows = loops.map((l) => {
    const t = l.runs.map((r) => r.agentStartHostMs);
    const i = stat(l.runs.map((r) => r.initToAgentMs));
    const w = median(l.runs.map((r) => r.hostWaitMs));
    const setup = median(l.runs.map((r) => r.hostSetupMs));
    const whole = median(l.runs.map((r) => r.hostSetupMs + r.agentStartHostMs));
    return (
      `| ${l.kernel} | ${l.boots} | ${l.failures.length} | ${ms(percentile(t, 0))} / ${ms(percentile(t, 10))} / **${ms(median(t))}** / ${ms(percentile(t, 90))} / ${ms(percentile(t, 100))} | ` +
      `${ms(setup)} | ${ms(whole)} | ${i.median.toFixed(1)} ms (${i.min.toFixed(1)}–${i.max.toFixed(1)}); waiting for the job ${w.toFixed(1)} ms | ${median(l.load).toFixed(2)} |`
    );
  });
  const targets = bootTargets(input, speedups, systemdRatios);
  const la = (xs: number[]): string => xs.map((x) => x.toFixed(2)).join(" / ");

  const markdown = [
    `# Boot to the agent: Debian's kernel and the microVM kernel, A3S init and systemd (${input.accel.toUpperCase()})`,
    "",
    `${machineLine()}; ${input.qemuVersion}; microvm, ${input.accel.toUpperCase()}, 1 vCPU, ${input.memoryMiB} MiB.`,
    `Kernels: ${[...new Set(cases.map((c) => c.kernelOrigin))].join(", ")}. Command lines: ${input.cmdline}.`,
    `Host load (1/5/15-min load average, 2 cores, shared with other work): ${la(input.load.atStart)} at the start, ${la(input.load.atEnd)} at the end; ` +
      `1-min load during the boots: median ${median(loads).toFixed(2)}, max ${Math.max(...loads).toFixed(2)}. Rounds: ${input.runs}, ${input.roundsSeconds.toFixed(0)} s.`,
    "",
    `## VMM start → agent start (median of ${input.runs}, one boot at a time, interleaved rounds, each starting one case later)`,
    "",
    "| kernel | rootfs | PID 1 | VMM start → agent start | range | probe's report at the host | QEMU CPU time by then | booted |",
    "|---|---|---|---|---|---|---|---|",
    ...mainRows,
    "",
    "VMM start is the spawn of QEMU. Agent start is, for the A3S init, the moment its `agent-start` line (written once the agent's",
    "execve succeeded) left the guest, from QEMU's own trace; for systemd, the probe's first output reaching the host on the serial",
    "console: systemd had reached basic.target (a service's default dependencies) and started `a3s-probe.service`, the unit an",
    "agent service would be. That includes the probe's own report (reading /proc, the mounts: the \"probe's report\" column gives",
    "the same moment for every row, and the systemd ratio below compares those). QEMU CPU time: all of QEMU's threads, on the",
    "CPU, until the probe's report arrived; under TCG it is the work of the boot, which a loaded host does not inflate the way",
    "it inflates the wall-clock columns, so on an idle host the wall clock comes down towards it.",
    "",
    "## Timeline (medians; host clock, QEMU's trace)",
    "",
    "| kernel | rootfs | QEMU ready | kernel entry | kernel entry → init start | init start → agent start (guest clock) | agent start → probe's report |",
    "|---|---|---|---|---|---|---|",
    ...timelineRows,
    "",
    "QEMU ready: its first fw_cfg access, while it sets up the machine. Kernel entry: the firmware selects fw_cfg's",
    "kernel entry point to jump to it (not seen for a bzImage, which boots another way). Agent start: the `agent-start` line",
    "left the guest. Init start: init's first instruction, placed on the host clock by init's own time to the agent (on the",
    "guest's clock, steady by then); it includes loading Debian's kernel modules, and the wait for the job: the host writes it",
    "when init-start (cpio) or root-ready (erofs) reaches it, as `run` does, and init waits only for what has not come by the",
    "time it is ready (bench/init-steps.ts splits init's time step by step). The guest's clock is not used for the",
    "kernel's part: under TCG it stands still for the ~100 ms in which the kernel calibrates its APIC timer with no tick.",
    "",
    "## The microVM kernel against Debian's kernel (same run)",
    "",
    "| rootfs | Debian's kernel | microVM kernel | speed-up |",
    "|---|---|---|---|",
    ...speedups.map((s) => `| ${s.image} | ${ms(s.debian)} | ${ms(s.microvm)} | ${s.ratio.toFixed(2)}× |`),
    "",
    "## systemd against the A3S init (same kernel; the probe's report at the host in both)",
    "",
    "| kernel | scratch cpio | Debian minbase + systemd | systemd is slower by |",
    "|---|---|---|---|",
    ...systemdRatios.map((s) => `| ${s.kernel} | ${ms(s.scratch)} | ${ms(s.systemd)} | ${s.ratio.toFixed(1)}× |`),
    "",
    `The systemd image: \`debootstrap:bookworm\` with systemd-sysv (mmdebstrap minbase, trim profile minimal), ${input.images.systemdPackages} packages, ` +
      `${input.images.systemdEntries} entries, an uncompressed cpio initramfs with /init → /lib/systemd/systemd and Debian's own /etc.`,
    "",
    ...(bz
      ? [
          "## Debian's kernel: packaged bzImage against the extracted vmlinux (PVH entry, the default)",
          "",
          `scratch cpio, VMM start → agent start: bzImage ${ms(startOf(bz))} (${range(stat(bz.runs.map((r) => agentStart(bz, r))))}), ` +
            `vmlinux ${ms(startOf(find(cases, "debian", "scratch cpio")))}: ${(startOf(bz) / startOf(find(cases, "debian", "scratch cpio"))).toFixed(2)}× faster.`,
          "",
        ]
      : []),
    ...(seabios ? firmwareSection(seabios, find(cases, seabios.kernel, "scratch cpio"), startOf) : []),
    `## ${loops[0]?.boots ?? 0} consecutive boots per kernel (runRootfs, the product path)`,
    "",
    `The scratch cpio.gz with the demo's workspace and skills shares over ${loops[0]?.transport || "–"}, one after another, nothing retried. ` +
      "Run start: the call to runRootfs; before QEMU starts it finds the kernel, verifies and starts virtiofsd and makes the boot media.",
    "",
    "| kernel | boots | failed | VMM start → agent start (host read the line): min / p10 / median / p90 / max | run start → VMM start, median | run start → agent start, median | init start → agent exec (guest clock), median (min–max) | load |",
    "|---|---|---|---|---|---|---|---|",
    ...loopRows,
    ...loops.flatMap((l) => l.failures.map((f) => `- ${l.kernel}: ${f}`)),
    "",
    "## Targets",
    "",
    "| target | measured | met |",
    "|---|---|---|",
    ...targets.map((t) => `| ${t.target} | ${t.measured} | ${t.met ? "yes" : "**no**"} |`),
    "",
    ...KVM_ON_PAPER,
    "",
    "Command: `npm run build && node dist/bench/boot.js` (BOOT_RUNS=10 rounds, BOOT_LOOP=50 boots per kernel by default).",
  ].join("\n");
  return { markdown, json: { ...input, targets, speedups, systemdRatios } };
}

function bootTargets(
  input: BootReportInput,
  speedups: readonly { image: string; debian: number; microvm: number; ratio: number }[],
  systemdRatios: readonly { kernel: string; ratio: number }[],
): { target: string; measured: string; met: boolean }[] {
  const targets: { target: string; measured: string; met: boolean }[] = [];
  for (const l of input.loops) {
    targets.push({ target: `0 failed boots in ${l.boots} consecutive boots, ${l.kernel} kernel`, measured: `${l.failures.length} failed`, met: l.failures.length === 0 && l.boots >= 50 });
  }
  for (const s of speedups.filter((x) => x.image !== "systemd")) {
    targets.push({ target: `VMM start → agent start ≤ 1.5 s, Debian's kernel, ${s.image}`, measured: `${ms(s.debian)} median`, met: s.debian <= 1500 });
    targets.push({ target: `VMM start → agent start ≤ 700 ms, microVM kernel, ${s.image}`, measured: `${ms(s.microvm)} median`, met: s.microvm <= 700 });
    targets.push({ target: `microVM kernel ≥ 2× faster than Debian's, same run, ${s.image}`, measured: `${s.ratio.toFixed(2)}×`, met: s.ratio >= 2 });
  }
  for (const s of systemdRatios) {
    targets.push({ target: `Debian minbase + systemd ≥ 8× slower than scratch, ${s.kernel} kernel`, measured: `${s.ratio.toFixed(1)}×`, met: s.ratio >= 8 });
  }
  for (const c of input.cases.filter((x) => x.init === "a3s" && x.image.startsWith("scratch") && !x.image.includes("bzImage") && !x.firmware)) {
    const d = medianOf(c.runs, initOwnMs);
    const own = medianOf(c.runs, (r) => initOwnMs(r) - hostWaitMs(r));
    targets.push({
      target: `init start → agent exec ≤ 30 ms (no shares; guest clock), ${c.kernel} kernel, ${c.image}`,
      measured: `${d.toFixed(1)} ms median (without the wait for the job: ${own.toFixed(1)} ms)`,
      met: d <= 30,
    });
  }
  for (const l of input.loops) {
    const d = median(l.runs.map((r) => r.initToAgentMs));
    const own = median(l.runs.map((r) => r.initToAgentMs - (Number.isFinite(r.hostWaitMs) ? r.hostWaitMs : 0)));
    targets.push({
      target: `init start → agent exec ≤ 30 ms (workspace and skills shares; guest clock), ${l.kernel} kernel`,
      measured: `${d.toFixed(1)} ms median (without the wait for the job: ${own.toFixed(1)} ms)`,
      met: d <= 30,
    });
  }
  return targets;
}

/** qboot (what run boots through) against QEMU's default firmware, same kernel and image, same rounds. */
function firmwareSection(other: BootCase, qboot: BootCase | undefined, startOf: (c: BootCase | undefined) => number): string[] {
  const entry = (c: BootCase | undefined): number => (c ? medianOf(c.runs, (r) => r.kernelEntryMs) : NaN);
  return [
    "## Firmware: qboot against QEMU's default (SeaBIOS on Debian)",
    "",
    `${other.kernel} kernel, scratch cpio, medians: VMM start → kernel entry ${ms(entry(qboot))} with qboot against ${ms(entry(other))} with QEMU's default; ` +
      `VMM start → agent start ${ms(startOf(qboot))} against ${ms(startOf(other))} (${range(stat(other.runs.map((r) => agentStart(other, r))))}). ` +
      "Every other row boots through qboot, as `run` does where QEMU ships it (src/boot/microvm-machine.ts).",
    "",
  ];
}

const KVM_ON_PAPER = [
  "## Under KVM, on paper",
  "",
  "Not measured: these machines have no usable /dev/kvm. This bench and runRootfs pick KVM by themselves where it works",
  "(`-accel kvm -cpu host`), and the tables then read KVM. What changes, from what is measured here:",
  "",
  "- Translation goes: under TCG the boot runs ~45,000 translation blocks of guest code, each translated before it runs; most",
  "  of the QEMU CPU time above. Under KVM the guest's code runs natively.",
  "- The APIC timer calibration goes: with `-cpu host` the guest has the TSC-deadline timer and skips the ~100 ms",
  "  calibration loop that TCG's CPU model forces on every boot.",
  "- What stays: QEMU's own start-up (the \"QEMU ready\" column, ~40–50 ms here, all host work) and the firmware's few",
  "  fw_cfg transfers.",
  "",
  "| | VMM start → guest init | VMM start → agent |",
  "|---|---|---|",
  "| Firecracker's published bound (its SPECIFICATION.md: InstanceStart API call → guest /sbin/init, 1 vCPU) | ≤ 125 ms | – |",
  "| expected here, microVM kernel (QEMU ~45 ms + firmware ~5 ms + a Firecracker-style kernel ~50–80 ms + init ~2 ms) | ~100–130 ms | ~100–140 ms |",
  "| expected here, Debian's kernel (hundreds of initcalls, module loading with signature checks, ftrace and BTF set-up) | ~300–500 ms | ~300–500 ms |",
  "",
  "The project's goal under KVM is ≤ 150 ms from VMM start to agent start; QEMU's start-up is then a third of it, which a",
  "VMM built for this (Firecracker, Cloud Hypervisor) spends in single-digit milliseconds.",
];
