// Boots one initramfs in QEMU microvm for the boot benchmarks and times it
// from the host: when QEMU was spawned, when the probe's first JSON bytes
// arrived (on the serial console for rootfs booting their own init, on the
// agent's stdout channel for the A3S init), and when QEMU exited. The
// native-init rootfs (BusyBox init, systemd) speak no A3S control protocol,
// so runRootfs cannot boot them; this spawns QEMU itself with the same
// argv (qemuArgs) that runRootfs uses, so the VM is the same in every case.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Accelerator } from "../src/boot/accelerator.js";
import { createServer, type Server } from "node:net";
import { LineSplitter, parseControlLine } from "../src/boot/control-lines.js";
import { qemuArgs } from "../src/boot/qemu-command.js";
import { requireTool } from "../src/util/host-tool.js";

export interface ConsoleBootOptions {
  readonly kernelPath: string;
  readonly initrd: string;
  readonly cmdline: string;
  readonly accel: Accelerator;
  readonly memoryMiB: number;
  /** Where the probe writes its report: the serial console (native inits) or the A3S stdout channel. */
  readonly probeOn: "console" | "stdout-channel";
  /** Extra `-M microvm,...` properties, e.g. "pit=off" (for trying machine options). */
  readonly machineOptions?: string;
  /** Give up after this long; the VM is killed. */
  readonly timeoutMs: number;
  /** After the probe has reported, how long the guest gets to power itself off before it is killed. */
  readonly poweroffGraceMs: number;
}

export interface ConsoleBoot {
  /** Host: QEMU spawned → the probe's first bytes arrived. */
  readonly hostAgentStartMs: number;
  /** Guest: CLOCK_BOOTTIME when the probe started (its `uptime_ms`). */
  readonly guestAgentStartMs: number;
  /** A3S init only: the control lines' guest times and when agent-start reached the host. */
  readonly initStartMs: number | null;
  readonly agentExecMs: number | null;
  readonly hostControlAgentStartMs: number | null;
  /** Host: QEMU spawned → QEMU exited (or was killed after the grace period). */
  readonly vmExitMs: number;
  readonly poweredOff: boolean;
  /** The end of the console log, for a person to check what happened. */
  readonly consoleTail: string;
}

/** The probe's first bytes; the "," makes sure the number has fully arrived, not just the chunk that ends in it. */
const PROBE_START = /\{"probe":1,"uptime_ms":([\d.]+),/;
/** Console text kept for error messages and for finding the probe's line; the probe's line is near the end. */
const KEEP_CONSOLE = 64 << 10;

export async function bootOnConsole(o: ConsoleBootOptions): Promise<ConsoleBoot> {
  const qemu = requireTool("qemu-system-x86_64", "qemu-system-x86");
  const work = mkdtempSync(join(tmpdir(), "a3s-bench-boot-"));
  const sockets = { stdout: join(work, "out.sock"), stderr: join(work, "err.sock"), control: join(work, "ctl.sock") };
  let started = 0;
  let probe: { hostMs: number; guestMs: number } | undefined;
  let controlAgentStart: number | null = null;
  let initStart: number | null = null;
  let agentExec: number | null = null;
  let consoleText = "";
  let stdoutText = "";
  let onProbe: () => void = () => {};
  const seeProbe = (text: string): void => {
    if (probe) return;
    const m = PROBE_START.exec(text);
    if (m) {
      probe = { hostMs: performance.now() - started, guestMs: Number(m[1]) };
      onProbe();
    }
  };
  const control = new LineSplitter((line) => {
    const ev = parseControlLine(line);
    if (ev?.kind === "init-start") initStart = ev.ms;
    if (ev?.kind === "agent-start") {
      agentExec = ev.ms;
      controlAgentStart = performance.now() - started;
    }
  });
  const channels = [
    await listenChannel(sockets.stdout, (b) => {
      if (o.probeOn !== "stdout-channel") return;
      stdoutText = (stdoutText + b.toString("latin1")).slice(-KEEP_CONSOLE);
      seeProbe(stdoutText);
    }),
    await listenChannel(sockets.stderr, () => {}),
    await listenChannel(sockets.control, (b) => control.push(b)),
  ];
  try {
    const args = qemuArgs({
      kernelPath: o.kernelPath,
      initrd: o.initrd,
      cmdline: o.cmdline,
      accel: o.accel,
      cpus: 1,
      memoryMiB: o.memoryMiB,
      transport: "9p",
      shares: [],
      sockets,
      consoleLog: "unused",
    });
    // The console goes to QEMU's stdout, a pipe, so each line is timed as it arrives.
    args[args.indexOf("-serial") + 1] = "stdio";
    if (o.machineOptions) {
      const m = args.indexOf("-M");
      args[m + 1] = `${args[m + 1]},${o.machineOptions}`;
    }
    started = performance.now();
    const vm = spawn(qemu, args, { stdio: ["ignore", "pipe", "pipe"] });
    let qemuStderr = "";
    vm.stderr.on("data", (b: Buffer) => (qemuStderr = (qemuStderr + b.toString()).slice(-4096)));
    vm.stdout.on("data", (b: Buffer) => {
      consoleText = (consoleText + b.toString("latin1")).slice(-KEEP_CONSOLE);
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
    const seen = probe as { hostMs: number; guestMs: number } | undefined;
    if (!seen) {
      const tail = consoleText.replace(/\r/g, "").split("\n").slice(-25).join("\n");
      throw new Error(`the probe never reported (QEMU ran ${Math.round(vmExitMs)} ms, ${exitStatus})\nQEMU: ${qemuStderr.trim()}\nconsole:\n${tail}`);
    }
    return {
      hostAgentStartMs: seen.hostMs,
      guestAgentStartMs: seen.guestMs,
      initStartMs: initStart,
      agentExecMs: agentExec,
      hostControlAgentStartMs: controlAgentStart,
      vmExitMs,
      poweredOff,
      consoleTail: consoleText.replace(/\r/g, "").slice(-2048),
    };
  } finally {
    channels.forEach((c) => c.server.close());
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * The host end of one virtio console: a Unix socket QEMU connects to at
 * start-up. `drained` resolves once QEMU's connection has ended and every
 * byte it sent has been handled (at once if it never connected).
 */
async function listenChannel(path: string, onData: (chunk: Buffer) => void): Promise<{ server: Server; drained: () => Promise<void> }> {
  let ended: Promise<void> | undefined;
  const server = createServer((sock) => {
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
