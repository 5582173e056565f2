import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { after } from "node:test";
import { chooseAccelerator, type Accelerator } from "../../src/boot/accelerator.js";
import { prepareBootMedia } from "../../src/boot/boot-media.js";
import { controlLinesInConsole, LineSplitter, parseControlLine, type ControlEvent } from "../../src/boot/control-lines.js";
import { kernelCmdlineOptions, type KernelBundle } from "../../src/boot/kernel-bundle.js";
import { bootFirmware } from "../../src/boot/microvm-machine.js";
import { qemuArgs } from "../../src/boot/qemu-command.js";
import { resolveKernel } from "../../src/boot/resolve-kernel.js";
import { kernelCommandLine } from "../../src/boot/run-vm.js";
import { cacheRoot } from "../../src/util/cache-dir.js";
import { requireTool } from "../../src/util/host-tool.js";

/**
 * Boots a cpio image with QEMU started here rather than by runRootfs, so a
 * test can change what the guest's channels are and how the host treats
 * them: the parts that differ from a normal run are the point of the test.
 */
export interface OwnQemuOptions {
  image: string;
  dir: string;
  /** Arguments for the agent, on the kernel command line. */
  args: string[];
  /** `debian`, `microvm` or a path, as `run --kernel` takes; default: the one `run` picks. */
  kernel?: string;
  /** More kernel command line. */
  append?: string;
  /** Pass a patched microVM kernel its APIC timer period under TCG, as `run` does (default: yes). */
  lapicTimerPeriod?: boolean;
  /** QEMU device for each channel (default: the named virtserialport `run` uses); null leaves the channel out. */
  devices?: Partial<Record<"out" | "err" | "ctl" | "chg", "virtconsole" | "virtserialport" | null>>;
  /** Called with the control socket and each control line the host reads from it. */
  onControlLine?: (socket: Socket, event: ControlEvent) => void;
}

export interface OwnQemuRun {
  /** Control lines from the control socket, then those found in the console log. */
  events: ControlEvent[];
  stdout: string;
  console: string;
}

const QEMU = "qemu-system-x86_64";
const servers: Server[] = [];
after(() => servers.forEach((s) => s.close()));

function listen(path: string, onSocket: (s: Socket) => void): Promise<void> {
  // highWaterMark 1: a paused socket reads nothing more from the kernel, so
  // what the guest writes meanwhile stays in QEMU's socket buffer.
  const server = createServer({ highWaterMark: 1 }, onSocket);
  servers.push(server);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, resolve);
  });
}

/** The QEMU options for chardev `id` with its virtserialport replaced by another device, or removed. */
function withDevice(args: string[], id: string, device: "virtconsole" | null): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    const next = args[i + 1];
    if (device === null && a === "-chardev" && next?.startsWith(`socket,id=${id},`)) i++;
    else if (a === "-device" && next?.startsWith(`virtserialport,chardev=${id},`)) {
      i++;
      if (device !== null) out.push(a, `${device},chardev=${id}`);
    } else out.push(a);
  }
  assert.notDeepEqual(out, args, `QEMU options for the ${id} channel`);
  return out;
}

/**
 * What `run` adds to the command line for this kernel (kernelCmdlineOptions),
 * less the APIC timer period when a test asks, and then ACPI stays on: a
 * kernel that measures its timer needs ACPI to tell it there is no PIT
 * (bootsWithoutAcpi, machine-acpi.ts).
 */
function kernelOptionsAsRun(kernel: KernelBundle, accel: Accelerator, withLapicTimerPeriod: boolean): ReturnType<typeof kernelCmdlineOptions> {
  const { lapicTimerPeriod, noAcpi, ...rest } = kernelCmdlineOptions(kernel, accel);
  return withLapicTimerPeriod && lapicTimerPeriod !== undefined ? { ...rest, lapicTimerPeriod, ...(noAcpi ? { noAcpi } : {}) } : rest;
}

export async function bootOwnQemu(opts: OwnQemuOptions): Promise<OwnQemuRun> {
  const kernel = await resolveKernel({ kernel: opts.kernel, workDir: opts.dir });
  const media = await prepareBootMedia({ kind: "cpio", image: opts.image, kernel, transport: "9p", workDir: opts.dir });
  const { accel } = await chooseAccelerator("auto", QEMU, kernel.kernelPath, cacheRoot());
  const sockets = { stdout: join(opts.dir, "out.sock"), stderr: join(opts.dir, "err.sock"), control: join(opts.dir, "ctl.sock"), changes: join(opts.dir, "chg.sock") };
  const consoleLog = join(opts.dir, "console.log");

  const events: ControlEvent[] = [];
  const stdout: Buffer[] = [];
  const closed: Promise<void>[] = [];
  const track = (s: Socket): void => {
    s.on("error", () => {});
    closed.push(new Promise((resolve) => s.on("close", () => resolve())));
  };
  await listen(sockets.stdout, (s) => {
    track(s);
    s.on("data", (b: Buffer) => stdout.push(b));
  });
  await listen(sockets.stderr, (s) => {
    track(s);
    s.resume();
  });
  await listen(sockets.changes, (s) => {
    track(s);
    s.resume();
  });
  await listen(sockets.control, (s) => {
    track(s);
    const lines = new LineSplitter((l) => {
      const ev = parseControlLine(l);
      if (!ev) return;
      events.push(ev);
      opts.onControlLine?.(s, ev);
    });
    s.on("data", (b: Buffer) => lines.push(b));
  });

  // The firmware run boots through (microvm-machine.ts).
  const firmware = bootFirmware(requireTool(QEMU, "qemu-system-x86"));
  const asRun = kernelOptionsAsRun(kernel, accel, opts.lapicTimerPeriod !== false);
  let args = qemuArgs({
    kernelPath: kernel.kernelPath,
    initrd: media.initrd,
    cmdline: `${await kernelCommandLine(accel, { args: opts.args, ...asRun })} ${opts.append ?? ""}`.trim(),
    accel,
    cpus: 1,
    memoryMiB: 512,
    transport: "9p",
    shares: [],
    sockets,
    consoleLog,
    ...(asRun.noAcpi ? { noAcpi: true } : {}),
    ...firmware.spec,
  });
  for (const [id, device] of Object.entries(opts.devices ?? {})) {
    if (device !== "virtserialport") args = withDevice(args, id, device ?? null);
  }
  const vm = spawn(QEMU, args, { stdio: ["ignore", "ignore", "inherit"] });
  const killer = setTimeout(() => vm.kill("SIGKILL"), 240_000);
  try {
    await new Promise((resolve) => vm.on("exit", resolve));
    await Promise.all(closed);
  } finally {
    clearTimeout(killer);
    vm.kill("SIGKILL");
  }
  const consoleText = await readFile(consoleLog, "utf8");
  return { events: [...events, ...controlLinesInConsole(consoleText)], stdout: Buffer.concat(stdout).toString(), console: consoleText };
}
