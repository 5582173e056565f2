// Benchmark: VMM start → agent start, one boot at a time, all in one run.
//
// For each kernel (Debian's generic kernel; the microVM kernel when
// `a3s-rootfs kernel build` has made one):
//   scratch cpio   the A3S init starting the probe from a cpio.gz initramfs,
//                  booted as runRootfs boots it (Debian's modules appended);
//   scratch erofs  the same rootfs as an erofs disk, the init in a small
//                  initramfs;
//   systemd        Debian bookworm minbase + systemd-sysv, systemd as PID 1,
//                  the probe a service (its "agent start": see boot-report.ts);
// plus Debian's kernel as its packaged bzImage, the before of the vmlinux/PVH
// boot, and the microVM kernel's cpio through QEMU's default firmware instead
// of qboot (run's choice, microvm-machine.ts). Rounds interleave every
// case, so a change in the host's load hits all alike. Then BOOT_LOOP consecutive boots per kernel through runRootfs
// (the product path, with the demo's workspace and skills shares): every
// failure counted, nothing retried, and the distribution.
//
// Run: npm run build && node dist/bench/boot.js
//   BOOT_RUNS=N rounds (default 10), BOOT_LOOP=N boots per kernel (default 50)
// Writes bench/results/boot.{md,json}.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { chooseAccelerator, type Accelerator } from "../src/boot/accelerator.js";
import { padClearOfFirmwareTables, prepareBootMedia, type BootMedia } from "../src/boot/boot-media.js";
import { debianKernel } from "../src/boot/debian-kernel.js";
import { kernelCmdlineOptions, type KernelBundle } from "../src/boot/kernel-bundle.js";
import { findMicrovmKernel, microvmKernelBundle } from "../src/boot/microvm-kernel-cache.js";
import { kernelCommandLine, runRootfs } from "../src/boot/run-vm.js";
import { cacheRoot } from "../src/util/cache-dir.js";
import { requireTool } from "../src/util/host-tool.js";
import { buildDebianNative, buildScratchDemo, buildScratchErofs } from "./boot-images.js";
import { bootReport, type BootCase, type LoopResult } from "./boot-report.js";
import { bootOnConsole } from "./boot-vm.js";
import { rotated, writeResults } from "./stats.js";

const RUNS = Number(process.env.BOOT_RUNS ?? 10);
const LOOP = Number(process.env.BOOT_LOOP ?? 50);
/** The same for every VM here; the systemd initramfs (~140 MiB) unpacks into it. */
const MEMORY_MIB = 512;
/** The rounds boot as `run IMAGE` does without --workspace or --skills: no share or overlay modules. */
const NO_SHARES = { shares: false, overlay: false } as const;
const say = (m: string): void => void process.stderr.write(`boot-bench: ${m}\n`);

interface Kernel {
  readonly name: "debian" | "microvm";
  readonly bundle: KernelBundle;
}

async function main(): Promise<void> {
  const qemu = requireTool("qemu-system-x86_64", "qemu-system-x86");
  const debian = await debianKernel({ progress: say });
  const built = await findMicrovmKernel();
  if (!built) say("no microVM kernel is built (a3s-rootfs kernel build): measuring Debian's kernel only");
  const kernels: Kernel[] = [{ name: "debian", bundle: debian }, ...(built ? [{ name: "microvm" as const, bundle: microvmKernelBundle(built) }] : [])];
  const accel: Accelerator = (await chooseAccelerator("auto", qemu, debian.kernelPath, cacheRoot())).accel;
  // As `run` boots: the job on the control channel, the channels' nodes named (the native inits ignore a3s.*).
  const cmdlines = new Map<string, string>();
  // As `run` boots each kernel's machine: without ACPI where it can (bootsWithoutAcpi).
  const withoutAcpi = new Set<string>();
  for (const k of kernels) {
    const options = kernelCmdlineOptions(k.bundle, accel);
    cmdlines.set(k.name, await kernelCommandLine(accel, { job: true, channelDevices: true, ...options }));
    if (options.noAcpi) withoutAcpi.add(k.name);
  }
  const work = mkdtempSync(join(tmpdir(), "a3s-bench-boot-"));
  try {
    const images = await buildImages(work);
    const cases = await bootCases(kernels, images, work, debian);
    const loadAtStart = loadavg();
    const started = performance.now();
    for (let round = 1; round <= RUNS; round++) {
      for (const c of rotated(cases, round)) await bootOnce(c, cmdlines.get(c.kernel) as string, accel, withoutAcpi.has(c.kernel));
      say(`round ${round}/${RUNS}: ${cases.map((c) => `${c.label} ${fmtMs(c.runs.at(-1)?.hostAgentStartMs)}`).join(", ")}; load ${loadavg()[0]?.toFixed(2)}`);
    }
    const roundsSeconds = (performance.now() - started) / 1000;
    const loops: LoopResult[] = [];
    for (const k of kernels) loops.push(await bootLoop(k, images.scratchCpio, work, accel));
    const report = bootReport({
      accel,
      cmdline: [...cmdlines].map(([k, line]) => `${k} \`${line}\``).join("; "),
      memoryMiB: MEMORY_MIB,
      runs: RUNS,
      cases,
      loops,
      load: { atStart: loadAtStart, atEnd: loadavg() },
      roundsSeconds,
      qemuVersion: execFileSync(qemu, ["--version"], { encoding: "utf8" }).split("\n")[0] as string,
      images: { systemdPackages: images.systemdPackages, systemdEntries: images.systemdEntries },
    });
    writeResults("boot", report.json, report.markdown);
    process.stdout.write(report.markdown + "\n");
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

interface Images {
  readonly scratchCpio: string;
  readonly scratchErofs: string;
  readonly systemd: string;
  readonly systemdPackages: number;
  readonly systemdEntries: number;
}

async function buildImages(work: string): Promise<Images> {
  const scratchCpio = join(work, "scratch.cpio.gz");
  const scratchErofs = join(work, "scratch.erofs");
  await buildScratchDemo(scratchCpio);
  await buildScratchErofs(scratchErofs);
  const systemd = join(work, "systemd.cpio");
  const built = await buildDebianNative(systemd, say);
  // A native image boots without prepareBootMedia, so it gets that padding here (see boot-media.ts).
  await padClearOfFirmwareTables(systemd);
  return { scratchCpio, scratchErofs, systemd, systemdPackages: built.packages, systemdEntries: built.entries };
}

/** Every case of the rounds: each kernel with each image, plus Debian's bzImage with the scratch cpio. */
async function bootCases(kernels: readonly Kernel[], images: Images, work: string, debian: KernelBundle): Promise<BootCase[]> {
  const cases: BootCase[] = [];
  for (const k of kernels) {
    const dir = join(work, k.name);
    mkdirSync(join(dir, "cpio"), { recursive: true });
    mkdirSync(join(dir, "erofs"));
    const cpio = await prepareBootMedia({ kind: "cpio", image: images.scratchCpio, kernel: k.bundle, transport: "9p", jobs: NO_SHARES, workDir: join(dir, "cpio") });
    const erofs = await prepareBootMedia({ kind: "erofs", image: images.scratchErofs, kernel: k.bundle, transport: "9p", jobs: NO_SHARES, workDir: join(dir, "erofs") });
    cases.push(
      a3sCase(k, "scratch cpio", k.bundle.kernelPath, cpio),
      a3sCase(k, "scratch erofs", k.bundle.kernelPath, erofs),
      { kernel: k.name, kernelOrigin: k.bundle.origin, label: `${k.name} systemd`, image: "systemd", init: "systemd", kernelPath: k.bundle.kernelPath, initrd: images.systemd, bytes: statSync(images.systemd).size, runs: [], failures: [] },
    );
  }
  if (debian.bzImagePath) {
    const cpio = cases.find((c) => c.kernel === "debian" && c.image === "scratch cpio") as BootCase;
    cases.push({ ...cpio, label: "debian bzImage cpio", image: "scratch cpio (bzImage)", kernelPath: debian.bzImagePath, runs: [], failures: [] });
  }
  // The microVM kernel's cpio once more through QEMU's default firmware: what qboot saves.
  const microvmCpio = cases.find((c) => c.kernel === "microvm" && c.image === "scratch cpio");
  if (microvmCpio) cases.push({ ...microvmCpio, label: "microvm cpio default firmware", image: "scratch cpio (QEMU's default firmware)", firmware: "default", runs: [], failures: [] });
  return cases;
}

function a3sCase(k: Kernel, image: string, kernelPath: string, media: BootMedia): BootCase {
  return {
    kernel: k.name,
    kernelOrigin: k.bundle.origin,
    label: `${k.name} ${image.replace("scratch ", "")}`,
    image,
    init: "a3s",
    kernelPath,
    initrd: media.initrd,
    ...(media.disk ? { disk: media.disk } : {}),
    bytes: statSync(media.initrd).size + (media.disk ? statSync(media.disk).size : 0),
    runs: [],
    failures: [],
  };
}

/** One boot of a case; a failure is recorded, not retried. */
async function bootOnce(c: BootCase, cmdline: string, accel: Accelerator, noAcpi: boolean): Promise<void> {
  const load = loadavg()[0] as number;
  try {
    const r = await bootOnConsole({
      kernelPath: c.kernelPath,
      initrd: c.initrd,
      ...(c.disk ? { disk: c.disk } : {}),
      cmdline,
      accel,
      memoryMiB: MEMORY_MIB,
      ...(noAcpi ? { noAcpi } : {}),
      ...(c.firmware ? { firmware: c.firmware } : {}),
      probeOn: c.init === "a3s" ? "stdout-channel" : "console",
      ...(c.init === "a3s" ? { job: "started" as const } : {}),
      timeoutMs: 180_000,
      poweroffGraceMs: 20_000,
    });
    // The console lines are for the step-by-step bench (init-steps.ts), not for this report's JSON.
    const { consoleLines, ...run } = r;
    void consoleLines;
    c.runs.push({ ...run, load });
  } catch (e) {
    c.failures.push((e as Error).message);
    say(`${c.label}: boot failed: ${(e as Error).message}`);
  }
}

/** LOOP consecutive runs through runRootfs with the demo's shares: every failure counted, the timeline of each. */
async function bootLoop(k: Kernel, image: string, work: string, accel: Accelerator): Promise<LoopResult> {
  const workspace = join(work, `loop-${k.name}`, "workspace");
  const skills = join(work, `loop-${k.name}`, "skills");
  mkdirSync(workspace, { recursive: true });
  mkdirSync(skills);
  writeFileSync(join(skills, "review.md"), "# skill: code review\n");
  const result: LoopResult = { kernel: k.name, kernelOrigin: k.bundle.origin, boots: LOOP, runs: [], failures: [], transport: "", load: [] };
  for (let i = 1; i <= LOOP; i++) {
    result.load.push(loadavg()[0] as number);
    try {
      const r = await runRootfs({ image, kernel: k.name, workspace, skills, accel, timeoutS: 120, memoryMiB: MEMORY_MIB });
      result.transport = r.transport;
      const t = r.timeline;
      if (r.exitCode !== 0 || t.initStartMs === null || t.agentStartMs === null || t.agentStartHostMs === null) {
        result.failures.push(`boot ${i}: exit ${r.exitCode}, ${r.setupError ?? r.stderr.slice(0, 200)}`);
      } else {
        const hostWaitMs = t.readyMs !== null && t.jobMs !== null ? t.jobMs - t.readyMs : NaN;
        result.runs.push({ agentStartHostMs: t.agentStartHostMs, initToAgentMs: t.agentStartMs - t.initStartMs, hostWaitMs, vmExitMs: t.vmExitMs, hostSetupMs: t.hostSetupMs });
      }
    } catch (e) {
      result.failures.push(`boot ${i}: ${(e as Error).message.split("\n")[0]}`);
    }
    if (i % 10 === 0) say(`${k.name}: ${i}/${LOOP} boots, ${result.failures.length} failed`);
  }
  return result;
}

function fmtMs(ms: number | undefined): string {
  return ms === undefined ? "failed" : `${ms.toFixed(0)} ms`;
}

await main();
