// Boots one image in QEMU microvm for the boot benchmarks and times it on
// one clock, the host's:
//   - from QEMU's own trace (-trace, timestamped by QEMU as it happens, so a
//     busy Node event loop does not shift them): QEMU ready (its first fw_cfg
//     access), kernel entry (the firmware selecting fw_cfg's kernel_entry to
//     jump to it), and, for the A3S init, the moment each control line left
//     the guest (init-start, agent-start);
//   - from this process: when the probe's first bytes arrived (on the serial
//     console for rootfs booting their own init, on the agent's stdout channel
//     for the A3S init), and when QEMU exited;
//   - QEMU's CPU time (all threads, /proc/PID/task/*/schedstat) when the
//     probe's bytes arrived: what the boot costs in work, which a loaded host
//     does not inflate the way it inflates the wall-clock times.
// The guest's own clock is not used for the split: under TCG it stands still
// while the kernel calibrates its APIC timer without ticks (about 100 ms).
// The native-init rootfs (BusyBox init, systemd) speak no A3S control
// protocol, so runRootfs cannot boot them; this spawns QEMU itself with the
// argv runRootfs uses (qemuArgs), so the VM is the same in every case.
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Accelerator } from "../src/boot/accelerator.js";
import { createServer, type Server, type Socket } from "node:net";
import { LineSplitter, parseControlLine } from "../src/boot/control-lines.js";
import { renderGuestJob } from "../src/layout/guest-config.js";
import { randomBytes } from "node:crypto";
import { bootFirmware } from "../src/boot/microvm-machine.js";
import { qemuArgs } from "../src/boot/qemu-command.js";
import { qemuLaunch } from "../src/boot/qemu-launch.js";
import { requireTool } from "../src/util/host-tool.js";

export interface ConsoleBootOptions {
  readonly kernelPath: string;
  readonly initrd: string;
  /** A root disk image (the A3S init's disk mode). */
  readonly disk?: string;
  readonly cmdline: string;
  readonly accel: Accelerator;
  readonly memoryMiB: number;
  /** Where the probe writes its report: the serial console (native inits) or the A3S stdout channel. */
  readonly probeOn: "console" | "stdout-channel";
  /** Extra `-M microvm,...` properties, e.g. "pit=off" (for trying machine options). */
  readonly machineOptions?: string;
  /** A machine without ACPI, as `run` boots the microVM kernel under TCG (bootsWithoutAcpi, src/boot/machine-acpi.ts). */
  readonly noAcpi?: boolean;
  /** Extra QEMU arguments after the VM's own, e.g. ["-cpu", "..."] (for trying CPU models). */
  readonly extraArgs?: readonly string[];
  /** "default": QEMU's own firmware instead of qboot, which `run` picks where QEMU ships it (microvm-machine.ts), to compare the two. */
  readonly firmware?: "default";
  /** Give the machine the change-set port, as `run` does for an overlay-mode job (default: no, as for a live or no workspace). */
  readonly changesPort?: boolean;
  /** Give up after this long; the VM is killed. */
  readonly timeoutMs: number;
  /** After the probe has reported, how long the guest gets to power itself off before it is killed. */
  readonly poweroffGraceMs: number;
  /**
   * Speak guest protocol 2 (the A3S init booted with a3s.job=1): the job is
   * written the moment `a3s ready` arrives ("ready"), or when init holds
   * its control channel for good, `a3s init-start`, or `a3s root-ready`
   * with a disk ("started", as `run` does); init reads it once it is
   * ready. `poweroff` once `agent-exit` came.
   */
  readonly job?: "ready" | "started";
}

/** One console line and when it arrived (ms after QEMU was spawned). */
export interface TimedLine {
  readonly hostMs: number;
  readonly text: string;
}

export interface ConsoleBoot {
  /** Host: QEMU spawned → the probe's first bytes arrived. */
  readonly hostAgentStartMs: number;
  /** Guest: CLOCK_BOOTTIME when the probe started (its `uptime_ms`). */
  readonly guestAgentStartMs: number;
  /** QEMU's trace, ms after spawning it: QEMU ready, the kernel entered. */
  readonly qemuReadyMs: number | null;
  readonly kernelEntryMs: number | null;
  /** A3S init only, QEMU's trace: the init-start and agent-start lines left the guest. */
  readonly initStartMs: number | null;
  readonly agentStartMs: number | null;
  /** Job mode, the guest's clock: init wrote `a3s ready`; it had read the job (`a3s job`). */
  readonly guestReadyMs: number | null;
  readonly guestJobMs: number | null;
  /** Job mode, ms after spawning QEMU: the ready line arrived, the job was written. */
  readonly readyHostMs: number | null;
  readonly jobSentMs: number | null;
  /**
   * A3S init only, the guest's clock as the lines carry it: init's first
   * instruction (init-start carries that time, though init writes the line
   * only once its channels are open, after loading any kernel modules) and
   * the agent's execve. Their difference is init's own time; the clock is
   * steady by then (the TSC), unlike during the kernel's early boot.
   */
  readonly guestInitMs: number | null;
  readonly guestExecMs: number | null;
  /** QEMU's CPU time (all threads) when the probe's bytes arrived. */
  readonly cpuAtProbeMs: number | null;
  /**
   * QEMU's CPU time (all threads) when the init-start and the agent-start
   * lines reached this process: their difference is what init's steps cost
   * in work, which a loaded host does not inflate the way it inflates the
   * guest's clock (the vCPU waiting for its turn on a host CPU counts on
   * the guest's clock, not here; nor does an idle vCPU waiting for the job).
   */
  readonly cpuAtInitStartMs: number | null;
  readonly cpuAtAgentStartMs: number | null;
  /** Host: QEMU spawned → QEMU exited (or was killed after the grace period). */
  readonly vmExitMs: number;
  readonly poweredOff: boolean;
  /** The end of the console log, for a person to check what happened. */
  readonly consoleTail: string;
  /** Every console line with its arrival time (init's debug lines among them). */
  readonly consoleLines: readonly TimedLine[];
}

/** The probe's first bytes; the "," makes sure the number has fully arrived, not just the chunk that ends in it. */
const PROBE_START = /\{"probe":1,"uptime_ms":([\d.]+),/;
/** Console text kept for error messages and for finding the probe's line; the probe's line is near the end. */
const KEEP_CONSOLE = 64 << 10;
/** The virtio-serial port of the control channel in qemuArgs (0 is kept for a console; stdout 1, stderr 2). */
const CONTROL_PORT = 3;

export async function bootOnConsole(o: ConsoleBootOptions): Promise<ConsoleBoot> {
  const qemu = requireTool("qemu-system-x86_64", "qemu-system-x86");
  const work = mkdtempSync(join(tmpdir(), "a3s-bench-boot-"));
  // The change-set port only when asked for, as `run` adds it only for an overlay-mode job.
  const base = { stdout: join(work, "out.sock"), stderr: join(work, "err.sock"), control: join(work, "ctl.sock") };
  const sockets: { stdout: string; stderr: string; control: string; changes?: string } = o.changesPort ? { ...base, changes: join(work, "chg.sock") } : base;
  let started = 0;
  let startedWall = 0;
  let pid = 0;
  let probe: { hostMs: number; guestMs: number; cpuMs: number | null } | undefined;
  const controlLines: { kind: string; bytes: number; ms: number | null }[] = [];
  let consoleText = "";
  let stdoutText = "";
  let onProbe: () => void = () => {};
  const seeProbe = (text: string): void => {
    if (probe) return;
    const m = PROBE_START.exec(text);
    if (m) {
      probe = { hostMs: performance.now() - started, guestMs: Number(m[1]), cpuMs: qemuCpuMs(pid) };
      onProbe();
    }
  };
  let controlSocket: Socket | undefined;
  let readyHostMs: number | null = null;
  const cpuAt: Record<string, number | null> = {};
  let jobSentMs: number | null = null;
  const sendJob = (): void => {
    if (jobSentMs !== null || !controlSocket) return;
    controlSocket.write(renderGuestJob({ providedShares: [], entropy: randomBytes(64), clockMs: Date.now() }));
    jobSentMs = performance.now() - started;
  };
  const control = new LineSplitter((line) => {
    const ev = parseControlLine(line);
    controlLines.push({ kind: ev?.kind ?? "other", bytes: Buffer.byteLength(line) + 1, ms: ev && "ms" in ev ? ev.ms : null });
    if (ev?.kind === "init-start" || ev?.kind === "agent-start") cpuAt[ev.kind] = qemuCpuMs(pid);
    if (!o.job) return;
    if (ev?.kind === "ready") readyHostMs = performance.now() - started;
    if (ev?.kind === "ready" || (o.job === "started" && ev?.kind === (o.disk ? "root-ready" : "init-start"))) sendJob();
    if (ev?.kind === "agent-exit" || ev?.kind === "error") controlSocket?.write("poweroff\n");
  });
  const consoleLines: TimedLine[] = [];
  let consolePartial = "";
  const channels = [
    await listenChannel(sockets.stdout, (b) => {
      if (o.probeOn !== "stdout-channel") return;
      stdoutText = (stdoutText + b.toString("latin1")).slice(-KEEP_CONSOLE);
      seeProbe(stdoutText);
    }),
    await listenChannel(sockets.stderr, () => {}),
    ...(sockets.changes !== undefined ? [await listenChannel(sockets.changes, () => {})] : []),
    await listenChannel(
      sockets.control,
      (b) => control.push(b),
      (sock) => (controlSocket = sock),
    ),
  ];
  try {
    const args = qemuArgs({
      kernelPath: o.kernelPath,
      initrd: o.initrd,
      ...(o.disk ? { disk: o.disk } : {}),
      cmdline: o.cmdline,
      accel: o.accel,
      cpus: 1,
      memoryMiB: o.memoryMiB,
      transport: "9p",
      shares: [],
      sockets,
      consoleLog: "unused",
      ...(o.noAcpi ? { noAcpi: true } : {}),
      ...(o.firmware === "default" ? {} : bootFirmware(qemu).spec),
    });
    // The console goes to QEMU's stdout, a pipe, so each line is timed as it arrives.
    args[args.indexOf("-serial") + 1] = "stdio";
    if (o.machineOptions) {
      const m = args.indexOf("-M");
      args[m + 1] = `${args[m + 1]},${o.machineOptions}`;
    }
    if (o.extraArgs) args.push(...o.extraArgs);
    args.push("-trace", "fw_cfg_select", "-trace", "virtio_console_flush_buf", "-msg", "timestamp=on");
    started = performance.now();
    startedWall = performance.timeOrigin + started;
    // Started as `run` starts it (under TCG without huge pages); each program in the chain execs the next, so the pid is QEMU's.
    const launch = qemuLaunch(qemu, args, { accel: o.accel });
    const vm = spawn(launch.file, launch.args, { stdio: ["ignore", "pipe", "pipe"] });
    pid = vm.pid ?? 0;
    let qemuStderr = "";
    vm.stderr.on("data", (b: Buffer) => (qemuStderr += b.toString()));
    vm.stdout.on("data", (b: Buffer) => {
      consoleText = (consoleText + b.toString("latin1")).slice(-KEEP_CONSOLE);
      const now = performance.now() - started;
      const parts = (consolePartial + b.toString("latin1")).split("\n");
      consolePartial = parts.pop() as string;
      for (const text of parts) consoleLines.push({ hostMs: now, text: text.replace(/\r$/, "") });
      if (o.probeOn === "console") seeProbe(consoleText);
    });
    let exitStatus = "";
    const exited = new Promise<number>((resolve) =>
      vm.on("exit", (code, signal) => {
        exitStatus = signal ? `killed by ${signal}` : `exit status ${code}`;
        resolve(performance.now() - started);
      }),
    );
    let poweredOff = true;
    const timers: NodeJS.Timeout[] = [
      setTimeout(() => {
        poweredOff = false;
        vm.kill("SIGKILL");
      }, o.timeoutMs),
    ];
    onProbe = () =>
      timers.push(
        setTimeout(() => {
          poweredOff = false;
          vm.kill("SIGKILL");
        }, o.poweroffGraceMs),
      );
    const vmExitMs = await exited;
    timers.forEach(clearTimeout);
    // What QEMU wrote to a channel just before it exited may still be unread: wait for each channel's end.
    await Promise.all(channels.map((c) => c.drained()));
    const seen = probe as { hostMs: number; guestMs: number; cpuMs: number | null } | undefined;
    const trace = readTrace(qemuStderr, startedWall);
    if (!seen) {
      const tail = consoleText.replace(/\r/g, "").split("\n").slice(-25).join("\n");
      const messages = qemuStderr.split("\n").filter((l) => !/^\d+@[\d.]+:/.test(l)).join("\n").trim();
      throw new Error(`the probe never reported (QEMU ran ${Math.round(vmExitMs)} ms, ${exitStatus})\nQEMU: ${messages}\nconsole:\n${tail}`);
    }
    return {
      hostAgentStartMs: seen.hostMs,
      guestAgentStartMs: seen.guestMs,
      qemuReadyMs: trace.qemuReadyMs,
      kernelEntryMs: trace.kernelEntryMs,
      initStartMs: lineLeftGuest(controlLines, trace.controlFlushes, "init-start"),
      agentStartMs: lineLeftGuest(controlLines, trace.controlFlushes, "agent-start"),
      guestInitMs: controlLines.find((l) => l.kind === "init-start")?.ms ?? null,
      guestExecMs: controlLines.find((l) => l.kind === "agent-start")?.ms ?? null,
      guestReadyMs: controlLines.find((l) => l.kind === "ready")?.ms ?? null,
      guestJobMs: controlLines.find((l) => l.kind === "job")?.ms ?? null,
      readyHostMs,
      jobSentMs,
      cpuAtProbeMs: seen.cpuMs,
      cpuAtInitStartMs: cpuAt["init-start"] ?? null,
      cpuAtAgentStartMs: cpuAt["agent-start"] ?? null,
      vmExitMs,
      poweredOff,
      consoleTail: consoleText.replace(/\r/g, "").slice(-2048),
      consoleLines,
    };
  } finally {
    channels.forEach((c) => c.server.close());
    rmSync(work, { recursive: true, force: true });
  }
}

/** QEMU's trace lines (`PID@SECONDS.MICROS:event args`), as ms after `startWall`. */
function readTrace(stderr: string, startWall: number): { qemuReadyMs: number | null; kernelEntryMs: number | null; controlFlushes: { ms: number; bytes: number }[] } {
  let qemuReadyMs: number | null = null;
  let kernelEntryMs: number | null = null;
  const controlFlushes: { ms: number; bytes: number }[] = [];
  for (const m of stderr.matchAll(/^\d+@(\d+\.\d+):(\S+) (.*)$/gm)) {
    const ms = Number(m[1]) * 1000 - startWall;
    if (m[2] === "fw_cfg_select") {
      qemuReadyMs ??= ms;
      if ((m[3] as string).includes("'kernel_entry'")) kernelEntryMs ??= ms;
    } else if (m[2] === "virtio_console_flush_buf") {
      const f = /port (\d+), in_len (\d+)/.exec(m[3] as string);
      if (f && Number(f[1]) === CONTROL_PORT) controlFlushes.push({ ms, bytes: Number(f[2]) });
    }
  }
  return { qemuReadyMs, kernelEntryMs, controlFlushes };
}

/** When the control line `kind` left the guest: the flush on the control port that carried its last byte. */
function lineLeftGuest(lines: readonly { kind: string; bytes: number }[], flushes: readonly { ms: number; bytes: number }[], kind: string): number | null {
  let end = 0;
  for (const l of lines) {
    end += l.bytes;
    if (l.kind !== kind) continue;
    let carried = 0;
    for (const f of flushes) {
      carried += f.bytes;
      if (carried >= end) return f.ms;
    }
    return null;
  }
  return null;
}

/** QEMU's CPU time so far, all threads (schedstat: ns on the CPU), or null once it has gone. */
function qemuCpuMs(pid: number): number | null {
  try {
    const tasks = readdirSync(`/proc/${pid}/task`);
    return tasks.reduce((sum, t) => sum + Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, "utf8").split(" ")[0]), 0) / 1e6;
  } catch {
    return null;
  }
}

/**
 * The host end of one virtio console: a Unix socket QEMU connects to at
 * start-up. `drained` resolves once QEMU's connection has ended and every
 * byte it sent has been handled (at once if it never connected).
 */
async function listenChannel(
  path: string,
  onData: (chunk: Buffer) => void,
  onConnect: (sock: Socket) => void = () => {},
): Promise<{ server: Server; drained: () => Promise<void> }> {
  let ended: Promise<void> | undefined;
  const server = createServer((sock) => {
    onConnect(sock);
    sock.on("data", onData);
    sock.on("error", () => {});
    ended = new Promise((resolve) => sock.on("close", () => resolve()));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  return { server, drained: () => ended ?? Promise.resolve() };
}
