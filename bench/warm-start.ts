// Benchmark: warm starts (issue 16), all in one run, with the same kernel
// and image:
//   - cold boot against restore from a snapshot, to agent start (the
//     host's clock: QEMU start -> the agent-start line), in interleaved
//     rounds so a change in the host's load hits both alike;
//   - the snapshot: its time and its size on disk (allocated bytes);
//   - memory: the RSS, PSS and private pages of 1 and of 4 concurrent
//     guests, restored and cold, measured while every agent is running;
//   - the designs compared for saving RAM: x-ignore-shared with a file
//     (what a3s-rootfs does), QEMU's mapped-ram, and a plain migration
//     stream: save time, size, restore to paused, and a guest's private
//     memory.
// Run: npm run build && node dist/bench/warm-start.js   (WARM_RUNS=N, default 5)
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { chooseAccelerator } from "../src/boot/accelerator.js";
import { prepareBootMedia } from "../src/boot/boot-media.js";
import { GuestChannel } from "../src/boot/guest-channels.js";
import { kernelCommandLine } from "../src/boot/kernel-cmdline.js";
import { makeSnapshot } from "../src/boot/make-snapshot.js";
import { qemuArgs } from "../src/boot/qemu-command.js";
import { QmpClient } from "../src/boot/qmp.js";
import { resolveKernel } from "../src/boot/resolve-kernel.js";
import { runRootfs, type RunOptions, type RunResult } from "../src/boot/run-vm.js";
import { RootfsBuilder } from "../src/builder/rootfs-builder.js";
import { renderGuestJob } from "../src/layout/guest-config.js";
import { guestProgramPath } from "../src/programs/index.js";
import { cacheRoot } from "../src/util/cache-dir.js";
import { requireTool } from "../src/util/host-tool.js";
import { machineLine, median, writeResults } from "./stats.js";

const RUNS = Number(process.env.WARM_RUNS ?? 5);
const MEMORY_MIB = 256;
const say = (m: string): void => void process.stderr.write(`warm-bench: ${m}\n`);
const mib = (b: number): string => `${(b / 1048576).toFixed(1)} MiB`;
const ms = (x: number): string => `${Math.round(x)} ms`;
const range = (xs: number[]): string => `${ms(median(xs))} (${ms(Math.min(...xs))}–${ms(Math.max(...xs))})`;

interface MemorySample {
  readonly rssKiB: number;
  readonly pssKiB: number;
  /** Private dirty pages: QEMU's own heap and code buffers, and the guest RAM it wrote (no other process can share them). */
  readonly privateKiB: number;
  /** Of those, the guest's RAM: anonymous pages in its mapping (copies of the snapshot's pages it wrote, or, cold, every page it touched). */
  readonly guestRamPrivateKiB: number;
}

/** One QEMU process's memory, from /proc/PID/smaps_rollup and the guest RAM's mapping in /proc/PID/smaps. */
function memoryOf(pid: number, ramMapping: (line: string) => boolean): MemorySample {
  const roll = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  const field = (text: string, name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0);
  let guestRamPrivateKiB = 0;
  let inRam = false;
  for (const line of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inRam = ramMapping(line);
    else if (inRam && /^Anonymous:/.test(line)) guestRamPrivateKiB += Number(/(\d+) kB/.exec(line)?.[1] ?? 0);
  }
  return {
    rssKiB: field(roll, "Rss"),
    pssKiB: field(roll, "Pss"),
    privateKiB: field(roll, "Private_Dirty"),
    guestRamPrivateKiB,
  };
}

/** The QEMU processes whose arguments name a run directory under `dir`. */
function qemuPids(dir: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const cmd = (() => {
      try {
        return readFileSync(`/proc/${name}/cmdline`, "utf8");
      } catch {
        return "";
      }
    })();
    if (cmd.startsWith(requireTool("qemu-system-x86_64", "qemu-system-x86")) && cmd.includes(`${dir}/a3s-run-`)) pids.push(Number(name));
  }
  return pids;
}

/**
 * `n` guests at once, each running an agent that prints its report and
 * sleeps; once every report is in, each QEMU's memory is read, then the
 * runs are stopped.
 */
async function concurrentMemory(n: number, base: Omit<RunOptions, "args">, ramMapping: (line: string) => boolean, runsDir: string): Promise<MemorySample[]> {
  const aborts: AbortController[] = [];
  const started: Promise<void>[] = [];
  const runs: Promise<unknown>[] = [];
  for (let i = 0; i < n; i++) {
    const abort = new AbortController();
    aborts.push(abort);
    let reported!: () => void;
    started.push(new Promise<void>((r) => (reported = r)));
    const out = new Writable({
      write(_c, _e, done) {
        reported();
        done();
      },
    });
    runs.push(runRootfs({ ...base, args: ["--sleep", "120000"], stdout: out, signal: abort.signal }).catch(() => undefined));
  }
  await Promise.all(started);
  await new Promise((r) => setTimeout(r, 500)); // the agents' reports are out; let the guests settle
  const samples = qemuPids(runsDir).map((pid) => memoryOf(pid, ramMapping));
  aborts.forEach((a) => a.abort());
  await Promise.all(runs);
  if (samples.length !== n) throw new Error(`found ${samples.length} QEMU processes for ${n} guests`);
  return samples;
}

/**
 * One design for keeping a machine's RAM, measured directly with QMP:
 * snapshot at the ready point, then one restore to paused and to a running
 * agent, with the restored QEMU's private memory.
 */
async function designSample(
  design: "x-ignore-shared" | "mapped-ram" | "plain",
  setup: { work: string; kernelPath: string; initrd: string; cmdline: string; qemu: string },
): Promise<{ snapshotMs: number; bytes: number; restorePausedMs: number; agentStartMs: number; privateKiB: number }> {
  const dir = mkdtempSync(join(setup.work, `${design}-`));
  const memoryFile = join(dir, "memory");
  const state = join(dir, "state");
  const caps = [{ capability: "events", state: true }, ...(design === "x-ignore-shared" ? [{ capability: "x-ignore-shared", state: true }] : []), ...(design === "mapped-ram" ? [{ capability: "mapped-ram", state: true }] : [])];
  const start = async (
    tag: string,
    incoming: boolean,
    onLine: (l: string) => void,
  ): Promise<{ pid: number; qmp: QmpClient; exited: Promise<unknown>; channels: GuestChannel[]; control: GuestChannel }> => {
    const sockets = { stdout: join(dir, `${tag}.out`), stderr: join(dir, `${tag}.err`), control: join(dir, `${tag}.ctl`), changes: join(dir, `${tag}.chg`) };
    const control = await GuestChannel.listen(sockets.control, (b) => b.toString().split("\n").forEach(onLine));
    const channels = [await GuestChannel.listen(sockets.stdout, () => {}), await GuestChannel.listen(sockets.stderr, () => {}), await GuestChannel.listen(sockets.changes, () => {}), control];
    const qmp = await QmpClient.listen(join(dir, `${tag}.qmp`));
    const args = qemuArgs({
      kernelPath: setup.kernelPath,
      initrd: setup.initrd,
      cmdline: setup.cmdline,
      accel: "tcg",
      cpus: 1,
      memoryMiB: MEMORY_MIB,
      transport: "9p",
      shares: [],
      sockets,
      consoleLog: join(dir, `${tag}.log`),
      qmpSocket: join(dir, `${tag}.qmp`),
      start: incoming ? "incoming" : "paused",
      ...(design === "x-ignore-shared" ? { memoryFile: { path: memoryFile, share: !incoming, readOnly: incoming } } : {}),
    });
    const vm = spawn(setup.qemu, args, { stdio: "ignore" });
    const exited = new Promise((r) => vm.on("exit", r));
    await qmp.ready();
    await qmp.execute("migrate-set-capabilities", { capabilities: caps });
    return { pid: vm.pid as number, qmp, exited, channels, control };
  };
  let ready!: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  const template = await start("template", false, (l) => l.startsWith("a3s ready") && ready());
  await template.qmp.execute("cont");
  await isReady;
  const s0 = performance.now();
  await template.qmp.execute("stop");
  const saved = template.qmp.waitForEvent("MIGRATION", (e) => ["completed", "failed"].includes(String(e.data?.status)));
  await template.qmp.execute("migrate", { uri: `file:${state}` });
  if ((await saved).data?.status !== "completed") throw new Error(`${design}: the save failed`);
  const snapshotMs = performance.now() - s0;
  await template.qmp.execute("quit").catch(() => {});
  await template.exited;
  template.channels.forEach((c) => c.close());
  template.qmp.close();
  if (design === "x-ignore-shared") execFileSync("fallocate", ["--dig-holes", memoryFile]);
  const bytes = readdirSync(dir)
    .filter((f) => f === "state" || f === "memory")
    .reduce((n, f) => n + statSync(join(dir, f)).blocks * 512, 0);

  let agent!: () => void;
  const agentStarted = new Promise<void>((r) => (agent = r));
  const r0 = performance.now();
  const restored = await start("restore", true, (l) => l.startsWith("a3s agent-start") && agent());
  const loaded = restored.qmp.waitForEvent("MIGRATION", (e) => ["completed", "failed"].includes(String(e.data?.status)));
  await restored.qmp.execute("migrate-incoming", { uri: `file:${state}` });
  if ((await loaded).data?.status !== "completed") throw new Error(`${design}: the restore failed`);
  const restorePausedMs = performance.now() - r0;
  await restored.qmp.execute("cont");
  restored.control.write(renderGuestJob({ args: ["--sleep", "60000"], providedShares: [], entropy: Buffer.alloc(64, 7), clockMs: Date.now() }));
  await agentStarted;
  const agentStartMs = performance.now() - r0;
  await new Promise((r) => setTimeout(r, 500));
  const privateKiB = memoryOf(restored.pid, () => false).privateKiB; // private dirty
  await restored.qmp.execute("quit").catch(() => {});
  await restored.exited;
  restored.channels.forEach((c) => c.close());
  restored.qmp.close();
  rmSync(dir, { recursive: true, force: true });
  return { snapshotMs, bytes, restorePausedMs, agentStartMs, privateKiB };
}

async function main(): Promise<void> {
  const qemu = requireTool("qemu-system-x86_64", "qemu-system-x86");
  const work = mkdtempSync(join(tmpdir(), "a3s-bench-warm-"));
  const runsDir = join(work, "runs");
  mkdirSync(runsDir);
  process.env.TMPDIR = runsDir; // every run's directory, so its QEMU can be found by its arguments
  const t0 = performance.now();
  const loads: number[] = [];
  const sampleLoad = (): void => void loads.push(loadavg()[0] as number);
  try {
    const image = join(work, "scratch.cpio");
    await new RootfsBuilder().withAgentBinary(guestProgramPath("probe")).withOutput("cpio", image).build();
    const kernel = await resolveKernel({ workDir: work, progress: say });
    const accel = (await chooseAccelerator("auto", qemu, kernel.kernelPath, cacheRoot())).accel;

    // ---- the snapshot ------------------------------------------------------
    const snapshot = join(work, "agent.snap");
    const snapshots: { ms: number; bootMs: number; bytes: { state: number; memory: number } }[] = [];
    for (let i = 0; i < 3; i++) {
      sampleLoad();
      const s = await makeSnapshot({ image, output: snapshot, memoryMiB: MEMORY_MIB });
      snapshots.push({ ms: s.manifest.snapshotMs, bootMs: s.bootMs, bytes: s.manifest.bytes });
    }
    const snapBytes = (s: (typeof snapshots)[number]): number => s.bytes.state + s.bytes.memory;
    say(`snapshot: ${mib(snapBytes(snapshots[0]!))}, ${snapshots.map((s) => ms(s.ms)).join(", ")}`);

    // ---- cold vs restore, interleaved ---------------------------------------
    const cold: RunResult[] = [];
    const warm: RunResult[] = [];
    for (let i = 0; i < RUNS; i++) {
      sampleLoad();
      cold.push(await runRootfs({ image, memoryMiB: MEMORY_MIB, args: ["--exit", "0"] }));
      sampleLoad();
      warm.push(await runRootfs({ snapshot, args: ["--exit", "0"] }));
      say(`round ${i + 1}: cold ${cold[i]!.timeline.agentStartHostMs} ms, restore ${warm[i]!.timeline.agentStartHostMs} ms`);
    }
    const at = (rs: RunResult[], f: (r: RunResult) => number | null): number[] => rs.map((r) => f(r) ?? NaN);
    const coldAgent = at(cold, (r) => r.timeline.agentStartHostMs);
    const warmAgent = at(warm, (r) => r.timeline.agentStartHostMs);
    const coldCall = at(cold, (r) => (r.timeline.agentStartHostMs ?? NaN) + r.timeline.hostSetupMs);
    const warmCall = at(warm, (r) => (r.timeline.agentStartHostMs ?? NaN) + r.timeline.hostSetupMs);
    const ratios = coldAgent.map((c, i) => (warmAgent[i] as number) / c);

    // ---- memory: 1 and 4 guests ----------------------------------------------
    const snapshotRam = (l: string): boolean => l.endsWith("/memory") || l.includes("/memory (deleted)");
    // Cold guests: the anonymous mapping of the guest's RAM (no file, about its size).
    const anonRam = (l: string): boolean => {
      const [from, to] = (l.split(" ")[0] ?? "").split("-").map((x) => Number.parseInt(x, 16)) as [number, number];
      const size = to - from;
      return / 0\s*$/.test(l) && size >= MEMORY_MIB * 1048576 && size <= (MEMORY_MIB + 4) * 1048576;
    };
    const memory: Record<string, MemorySample[]> = {};
    for (const n of [1, 4]) {
      sampleLoad();
      memory[`restore-${n}`] = await concurrentMemory(n, { snapshot }, snapshotRam, runsDir);
      sampleLoad();
      memory[`cold-${n}`] = await concurrentMemory(n, { image, memoryMiB: MEMORY_MIB }, anonRam, runsDir);
      say(`memory with ${n}: restore PSS ${memory[`restore-${n}`]!.map((m) => m.pssKiB).join("/")} KiB, cold ${memory[`cold-${n}`]!.map((m) => m.pssKiB).join("/")} KiB`);
    }

    // ---- designs -------------------------------------------------------------
    const media = await prepareBootMedia({ kind: "cpio", image, kernel, transport: "9p", workDir: work });
    const setup = { work, kernelPath: kernel.kernelPath, initrd: media.initrd, cmdline: await kernelCommandLine(accel, { job: true, channelDevices: true }), qemu };
    const designs: Record<string, Awaited<ReturnType<typeof designSample>>> = {};
    for (const d of ["x-ignore-shared", "mapped-ram", "plain"] as const) {
      sampleLoad();
      designs[d] = await designSample(d, setup);
      say(`design ${d}: ${JSON.stringify(designs[d])}`);
    }

    // ---- results ---------------------------------------------------------------
    const sum = (xs: MemorySample[], f: (m: MemorySample) => number): number => xs.reduce((n, m) => n + f(m), 0);
    const kib = (k: number): string => mib(k * 1024);
    const memRow = (name: string, key: string): string => {
      const xs = memory[key] as MemorySample[];
      return `| ${name} | ${xs.length} | ${kib(sum(xs, (m) => m.rssKiB) / xs.length)} | ${kib(sum(xs, (m) => m.pssKiB))} | ${kib(sum(xs, (m) => m.pssKiB) / xs.length)} | ${kib(sum(xs, (m) => m.privateKiB) / xs.length)} | ${kib(sum(xs, (m) => m.guestRamPrivateKiB) / xs.length)} |`;
    };
    const extra = (kind: string): number => (sum(memory[`${kind}-4`]!, (m) => m.pssKiB) - sum(memory[`${kind}-1`]!, (m) => m.pssKiB)) / 3;
    const wall = (performance.now() - t0) / 1000;
    const snapshotMs = snapshots.map((s) => s.ms);
    const md = [
      `# Warm starts: cold boot vs restore from a snapshot (median of ${RUNS} rounds)`,
      "",
      `${machineLine()}; QEMU microvm, ${accel.toUpperCase()}, 1 vCPU, ${MEMORY_MIB} MiB; kernel ${kernel.origin}; the scratch image with the probe agent (cpio, ${statSync(image).size} bytes).`,
      `Host load (1-min loadavg, 2 cores, shared with other work) during the bench: median ${median(loads).toFixed(2)}, max ${Math.max(...loads).toFixed(2)}. Bench wall time ${wall.toFixed(0)} s.`,
      "",
      "## To agent start",
      "",
      "| start | QEMU start → agent start (host) | run called → agent start (host) | restore (QEMU start → resumed) | job sent |",
      "|---|---|---|---|---|",
      `| cold boot | ${range(coldAgent)} | ${range(coldCall)} | – | ${range(at(cold, (r) => r.timeline.jobSentMs))} |`,
      `| restore (run --snapshot) | ${range(warmAgent)} | ${range(warmCall)} | ${range(at(warm, (r) => r.timeline.restoreMs))} | ${range(at(warm, (r) => r.timeline.jobSentMs))} |`,
      "",
      `Restore / cold, QEMU start → agent start, per round: ${ratios.map((r) => r.toFixed(2)).join(", ")} (median ${median(ratios).toFixed(2)}; target ≤ 0.33, and under 300 ms).`,
      "",
      "## The snapshot",
      "",
      `Boot to the ready point ${range(snapshots.map((s) => s.bootMs))}; save (stop + migrate the device state) ${range(snapshotMs)}; on disk ${mib(snapBytes(snapshots[0]!))} (memory file ${mib(snapshots[0]!.bytes.memory)} allocated of ${MEMORY_MIB} MiB, state ${mib(snapshots[0]!.bytes.state)}); target under 64 MB.`,
      "",
      "## Memory of concurrent guests (each agent running, measured from /proc/PID/smaps)",
      "",
      "| guests | n | RSS each | PSS, all together | PSS each | private dirty each (QEMU + guest RAM written) | of which guest RAM |",
      "|---|---|---|---|---|---|---|",
      memRow("restored", "restore-1"),
      memRow("restored", "restore-4"),
      memRow("cold", "cold-1"),
      memRow("cold", "cold-4"),
      "",
      `Each extra guest costs ${kib(extra("restore"))} of PSS restored, ${kib(extra("cold"))} cold (PSS of 4 minus PSS of 1, over 3). A restored guest's RAM is the snapshot's memory file mapped privately: the pages it does not write stay shared in the page cache.`,
      "",
      "## Designs for the saved RAM (one save and one restore each, QMP directly)",
      "",
      "| design | save | on disk | restore to paused | restore → agent start | QEMU private dirty memory |",
      "|---|---|---|---|---|---|",
      ...Object.entries(designs).map(([d, r]) => `| ${d}${d === "x-ignore-shared" ? " (a3s-rootfs)" : ""} | ${ms(r.snapshotMs)} | ${mib(r.bytes)} | ${ms(r.restorePausedMs)} | ${ms(r.agentStartMs)} | ${kib(r.privateKiB)} |`),
      "",
      "x-ignore-shared: the RAM is a shared file while the template runs, so the save writes only devices and CPU; a restore maps the file privately. mapped-ram: the save writes every page at its offset in the file; a restore reads them into its own anonymous RAM. plain: the classic stream of non-zero pages, read the same way.",
      "",
      "Run: `npm run build && node dist/bench/warm-start.js` (WARM_RUNS=N).",
    ].join("\n");
    writeResults("warm-start", { kernel: kernel.origin, accel, memoryMiB: MEMORY_MIB, loads, snapshots, cold: cold.map((r) => r.timeline), warm: warm.map((r) => r.timeline), ratios, memory, designs }, md);
    say(`wrote bench/results/warm-start.md in ${wall.toFixed(0)} s`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
