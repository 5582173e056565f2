// The table of rootfs approaches, measured: scratch, busybox and debootstrap
// minbase (and a container image when one is given), each built by this
// project with the A3S init and the probe as its agent, audited, and booted
// on the same kernel and accelerator with runRootfs, one boot at a time in
// interleaved rounds. Each is booted two ways: as a cpio.gz initramfs and as
// an erofs disk image (a small initramfs with the init and the modules
// mounts it). Every figure comes with its ratio to scratch.
// Run: npm run build && node dist/bench/compare-rootfs.js [SOURCE-SPEC [LABEL]]
//   e.g. node dist/bench/compare-rootfs.js docker://alpine:3.20 alpine   (COMPARE_RUNS=N, default 5)
import { mkdtempSync, rmSync } from "node:fs";
import { copyFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { auditTree } from "../src/audit/audit.js";
import { chooseAccelerator } from "../src/boot/accelerator.js";
import { debianKernel } from "../src/boot/debian-kernel.js";
import { runRootfs } from "../src/boot/run-vm.js";
import { RootfsBuilder } from "../src/index.js";
import { guestProgramPath } from "../src/programs/index.js";
import { cacheRoot } from "../src/util/cache-dir.js";
import { requireTool } from "../src/util/host-tool.js";
import { EPOCH } from "./boot-images.js";
import { machineLine, median, writeResults } from "./stats.js";

const RUNS = Number(process.env.COMPARE_RUNS ?? 5);
const FORMATS = ["cpio.gz", "erofs"] as const;
type BootFormat = (typeof FORMATS)[number];
const say = (m: string): void => void process.stderr.write(`compare: ${m}\n`);

interface Approach {
  readonly name: string;
  readonly spec: string;
  readonly images: Record<BootFormat, { path: string; bytes: number }>;
  readonly entries: number;
  readonly contentBytes: number;
  readonly executables: number;
  readonly setuid: number;
  readonly shells: readonly string[];
  readonly packageManagers: readonly string[];
  readonly grade: string;
  readonly buildMs: number;
  readonly boots: Record<BootFormat, { hostMs: number; guestMs: number; load: number }[]>;
}

async function main(): Promise<void> {
  const extra = process.argv[2];
  const specs = [
    { name: "scratch", spec: "scratch" },
    { name: "busybox", spec: "busybox" },
    { name: "debootstrap minbase", spec: "debootstrap:bookworm" },
    ...(extra ? [{ name: process.argv[3] ?? extra, spec: extra }] : []),
  ];
  const kernel = await debianKernel({ progress: say });
  const accel = (await chooseAccelerator("auto", requireTool("qemu-system-x86_64", "qemu-system-x86"), kernel.kernelPath, cacheRoot())).accel;
  const work = mkdtempSync(join(tmpdir(), "a3s-bench-compare-"));
  try {
    const approaches: Approach[] = [];
    for (const [i, s] of specs.entries()) {
      const started = performance.now();
      const images = { "cpio.gz": join(work, `${i}.cpio.gz`), erofs: join(work, `${i}.erofs`) };
      say(`building ${s.spec}`);
      const build = await new RootfsBuilder()
        .withSource(s.spec)
        .withAgentBinary(guestProgramPath("probe"))
        .withOutput("cpio", images["cpio.gz"])
        .withOutput("erofs", images.erofs)
        .withEpoch(EPOCH)
        .onWarning(() => {})
        .onProgress(say)
        .build();
      const buildMs = performance.now() - started;
      // No build cache here, so the tree is always there.
      if (!build.tree) throw new Error(`${s.spec}: the build returned no tree`);
      const audit = await auditTree(build.tree, { target: s.spec });
      const bytesOf = (format: "cpio" | "erofs"): number => build.outputs.find((o) => o.format === format)?.bytes ?? 0;
      approaches.push({
        ...s,
        images: { "cpio.gz": { path: images["cpio.gz"], bytes: bytesOf("cpio") }, erofs: { path: images.erofs, bytes: bytesOf("erofs") } },
        entries: audit.entries,
        contentBytes: audit.bytes,
        executables: audit.executableCount,
        setuid: audit.setuid.length,
        shells: audit.shells,
        packageManagers: audit.packageManagers,
        grade: audit.grade,
        buildMs,
        boots: { "cpio.gz": [], erofs: [] },
      });
    }

    // A boot that fails is logged (its console kept in FAILED_CONSOLE_DIR), counted in the results and tried once more.
    const failures: string[] = [];
    const boot = async (a: Approach, format: BootFormat): Promise<void> => {
      for (let attempt = 1; ; attempt++) {
        const load = loadavg()[0] as number;
        const consoleLog = join(work, "console.log");
        try {
          const r = await runRootfs({ image: a.images[format].path, accel, timeoutS: 300, consoleLog });
          const t = r.timeline;
          if (r.exitCode !== 0 || t.agentStartHostMs === null || t.agentStartMs === null) {
            throw new Error(`exit ${r.exitCode} ${r.setupError ?? r.stderr}`);
          }
          a.boots[format].push({ hostMs: t.agentStartHostMs, guestMs: t.agentStartMs, load });
          return;
        } catch (e) {
          const first = (e as Error).message.split("\n")[0] as string;
          failures.push(`${a.name} (${format}): ${first}`);
          const kept = join(process.env.FAILED_CONSOLE_DIR ?? tmpdir(), `a3s-compare-failed-${failures.length}.log`);
          await copyFile(consoleLog, kept).catch(() => {});
          say(`${a.name} (${format}) failed (attempt ${attempt}; console kept in ${kept}): ${(e as Error).message}`);
          if (attempt === 2) throw e;
        }
      }
    };
    const started = performance.now();
    for (let round = 1; round <= RUNS; round++) {
      for (const a of approaches) for (const format of FORMATS) await boot(a, format);
      say(`round ${round}/${RUNS} done; load ${loadavg()[0]?.toFixed(2)}`);
    }
    const bootSeconds = (performance.now() - started) / 1000;
    report(approaches, accel, kernel.origin, bootSeconds, failures);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function report(approaches: readonly Approach[], accel: string, kernelOrigin: string, bootSeconds: number, failures: readonly string[]): void {
  const base = approaches[0] as Approach;
  const med = (a: Approach, f: BootFormat, k: "hostMs" | "guestMs"): number => median(a.boots[f].map((b) => b[k]));
  const ratio = (v: number, b: number): string => (b === 0 ? (v === 0 ? "—" : "∞") : `${(v / b).toFixed(v / b >= 10 ? 0 : 1)}×`);
  const rows = approaches.map((a) => ({
    name: a.name,
    spec: a.spec,
    imageBytes: { "cpio.gz": a.images["cpio.gz"].bytes, erofs: a.images.erofs.bytes },
    contentBytes: a.contentBytes,
    entries: a.entries,
    executables: a.executables,
    setuid: a.setuid,
    shellPresent: a.shells.length > 0,
    shells: a.shells,
    packageManagers: a.packageManagers,
    auditGrade: a.grade,
    buildMs: Math.round(a.buildMs),
    bootToAgentMs: Object.fromEntries(FORMATS.map((f) => [f, { host: med(a, f, "hostMs"), guest: med(a, f, "guestMs") }])) as Record<
      BootFormat,
      { host: number; guest: number }
    >,
    ratios: {
      cpioGzBytes: a.images["cpio.gz"].bytes / base.images["cpio.gz"].bytes,
      erofsBytes: a.images.erofs.bytes / base.images.erofs.bytes,
      entries: a.entries / base.entries,
      executables: a.executables / base.executables,
      bootCpioGzHost: med(a, "cpio.gz", "hostMs") / med(base, "cpio.gz", "hostMs"),
      bootErofsHost: med(a, "erofs", "hostMs") / med(base, "erofs", "hostMs"),
    },
    boots: a.boots,
  }));
  const loads = approaches.flatMap((a) => FORMATS.flatMap((f) => a.boots[f].map((b) => b.load)));
  const cell = (v: number, b: number, show: (n: number) => string): string => `${show(v)} (${ratio(v, b)})`;
  const md = [
    `# Rootfs approaches compared (boot: median of ${RUNS} runs)`,
    "",
    `${machineLine()}; QEMU microvm, ${accel.toUpperCase()}, 1 vCPU, 512 MiB; kernel ${kernelOrigin} (PVH vmlinux). ` +
      `Every rootfs carries the A3S init with the probe as its agent. Host load (1-min loadavg, 2 cores, shared) during the ` +
      `boots: median ${median(loads).toFixed(2)}, max ${Math.max(...loads).toFixed(2)}; ${bootSeconds.toFixed(0)} s of boots.`,
    "",
    "| rootfs | cpio.gz | erofs | entries | executables | setuid | shell | package managers | boot to agent, initramfs | boot to agent, erofs disk |",
    "|---|---|---|---|---|---|---|---|---|---|",
    ...approaches.map((a) => {
      const b = (f: BootFormat): string => cell(med(a, f, "hostMs"), med(base, f, "hostMs"), secs);
      return (
        `| ${a.name} | ${cell(a.images["cpio.gz"].bytes, base.images["cpio.gz"].bytes, size)} | ` +
        `${cell(a.images.erofs.bytes, base.images.erofs.bytes, size)} | ${cell(a.entries, base.entries, String)} | ` +
        `${cell(a.executables, base.executables, String)} | ${a.setuid} | ${a.shells.length ? `yes (${a.shells.length})` : "no"} | ` +
        `${a.packageManagers.length ? a.packageManagers.join(", ") : "none"} | ${b("cpio.gz")} | ${b("erofs")} |`
      );
    }),
    "",
    "Ratios in parentheses are to scratch. Boot to agent: host time from starting QEMU to the `a3s agent-start` control " +
      "line reaching the host (runRootfs's timeline.agentStartHostMs); the guest's own clock at agent start:",
    "",
    "| rootfs | guest uptime at agent start, initramfs | erofs disk | audit grade | build time |",
    "|---|---|---|---|---|",
    ...approaches.map(
      (a) =>
        `| ${a.name} | ${secs(med(a, "cpio.gz", "guestMs"))} | ${secs(med(a, "erofs", "guestMs"))} | ${a.grade} | ${secs(a.buildMs)} |`,
    ),
    "",
    "- Size: the image files as `a3s-rootfs build -o cpio:X.cpio.gz -o erofs:X.erofs` writes them (before runRootfs " +
      "appends this kernel's modules to an initramfs). Entries, executables (ELF programs and `#!` scripts), setuid files, " +
      "shells and package managers come from the audit (`auditTree`, what `a3s-rootfs inspect` reports).",
    "- debootstrap minbase: `debootstrap:bookworm`, mmdebstrap minbase, trim profile minimal, A3S layer on top.",
    "- The same init boots every rootfs here, so boot time differs only by what the image costs to load: an initramfs " +
      "is decompressed and unpacked by the guest kernel before init runs (under TCG, slowly), an erofs image is read " +
      "on demand. For each rootfs booting its own init (BusyBox init, systemd) see boot.md.",
    `- Failed boots (each retried once): ${failures.length ? failures.join("; ") : "none"}.`,
    "",
    "Command: `npm run build && node dist/bench/compare-rootfs.js [SOURCE-SPEC [LABEL]]`",
  ].join("\n");
  writeResults("rootfs-comparison", { machine: machineLine(), accel, kernel: kernelOrigin, runs: RUNS, load: { median: median(loads), max: Math.max(...loads) }, rows, failures }, md);
  process.stdout.write(md + "\n");
}

function size(bytes: number): string {
  return bytes >= 1 << 20 ? `${(bytes / 2 ** 20).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(0)} KiB`;
}

function secs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`;
}

await main();
