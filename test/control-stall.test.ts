// A host that stops reading the control channel for a while must neither
// stall the guest's PID 1 nor lose the agent's exit status
// (docs/guest-protocol.md §7). Real boots: the host side here is a QEMU
// command of our own. Once the agent has started, the host stops reading
// the control socket for some seconds and floods the guest with "signal 28"
// commands (SIGWINCH, which the probe ignores), each of which makes init
// report a signal line.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { chooseAccelerator } from "../src/boot/accelerator.js";
import { prepareBootMedia } from "../src/boot/boot-media.js";
import { LineSplitter, parseControlLine, type ControlEvent } from "../src/boot/control-lines.js";
import { qemuArgs } from "../src/boot/qemu-command.js";
import { resolveKernel } from "../src/boot/resolve-kernel.js";
import { kernelCommandLine } from "../src/boot/run-vm.js";
import { cacheRoot } from "../src/util/cache-dir.js";
import { buildProbeImage } from "./helpers/boot.js";
import { tempDir } from "./helpers/temp-dir.js";

interface StalledRun {
  events: ControlEvent[];
  stdout: string;
}

interface StallOptions {
  /** virtconsole: QEMU drops what the host socket cannot take; virtserialport: QEMU throttles the guest. */
  port: "virtconsole" | "virtserialport";
  /** How long the host reads nothing from the control socket once the agent has started. */
  stallMs: number;
  /** "signal 28" commands written to the guest at once. */
  flood: number;
  args: string[];
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

async function bootWithStalledHost(opts: StallOptions): Promise<StalledRun> {
  const dir = tempDir();
  const control = opts.port === "virtconsole" ? "/dev/hvc2" : "/dev/vport0p2";
  const image = await buildProbeImage(dir, "cpio", "rootfs.cpio", (b) =>
    b.withFile("/etc/a3s/guest.conf.d/10-control.conf", `a3s-guest-config 1\ncontrol=${control}\n`),
  );
  const kernel = await resolveKernel({ workDir: dir });
  const media = await prepareBootMedia({ kind: "cpio", image, kernel, transport: "9p", workDir: dir });
  const { accel } = await chooseAccelerator("auto", QEMU, kernel.kernelPath, cacheRoot());
  const sockets = { stdout: join(dir, "out.sock"), stderr: join(dir, "err.sock"), control: join(dir, "ctl.sock") };

  const events: ControlEvent[] = [];
  const stdout: Buffer[] = [];
  let controlDone: () => void = () => {};
  const controlRead = new Promise<void>((resolve) => (controlDone = resolve));
  await listen(sockets.stdout, (s) => s.on("data", (b: Buffer) => stdout.push(b)));
  await listen(sockets.stderr, (s) => s.resume());
  await listen(sockets.control, (s) => {
    const lines = new LineSplitter((l) => {
      const ev = parseControlLine(l);
      if (!ev) return;
      events.push(ev);
      if (ev.kind !== "agent-start") return;
      s.pause();
      s.write("signal 28\n".repeat(opts.flood));
      setTimeout(() => s.resume(), opts.stallMs);
    });
    s.on("data", (b: Buffer) => lines.push(b));
    s.on("close", () => controlDone());
    s.on("error", () => {});
  });

  const args = qemuArgs({
    kernelPath: kernel.kernelPath,
    initrd: media.initrd,
    cmdline: await kernelCommandLine(accel, { args: opts.args }),
    accel,
    cpus: 1,
    memoryMiB: 512,
    transport: "9p",
    shares: [],
    sockets,
    consoleLog: join(dir, "console.log"),
  }).map((a) => (a === "virtconsole,chardev=ctl" ? `${opts.port},chardev=ctl` : a));
  assert.ok(args.includes(`${opts.port},chardev=ctl`), "the control port device was replaced");
  const vm = spawn(QEMU, args, { stdio: ["ignore", "ignore", "inherit"] });
  const killer = setTimeout(() => vm.kill("SIGKILL"), 240_000);
  try {
    await new Promise((resolve) => vm.on("exit", resolve));
    await controlRead;
  } finally {
    clearTimeout(killer);
    vm.kill("SIGKILL");
  }
  return { events, stdout: Buffer.concat(stdout).toString() };
}

function orphansReaped(stdout: string): number | undefined {
  const report = JSON.parse(stdout.trim().split("\n")[0] ?? "{}") as { orphans?: { reaped: number } };
  return report.orphans?.reaped;
}

describe("a host that stops reading the control channel", () => {
  it("virtconsole (QEMU drops what the host does not take): the exit status still arrives", async () => {
    // The host's socket holds a few hundred writes; the flood asks for
    // thousands of signal lines, of which init writes at most 64. (An init
    // that wrote them all lost its agent-exit line here.)
    const r = await bootWithStalledHost({ port: "virtconsole", stallMs: 8000, flood: 2000, args: ["--delay", "5000", "--exit", "7"] });
    const end = r.events.find((e) => e.kind === "agent-exit" || e.kind === "error");
    assert.equal(end?.kind, "agent-exit");
    assert.equal(end.kind === "agent-exit" ? end.status : -1, 7);
    const signals = r.events.filter((e) => e.kind === "signal").length;
    assert.ok(signals > 0 && signals <= 64, `${signals} signal lines reached the host`);
    assert.ok(r.events.some((e) => e.kind === "poweroff"));
  });

  it("virtserialport (QEMU throttles the guest): init keeps reaping orphans, and the exit status arrives when the host reads again", async () => {
    // The orphans come after the flood; the probe waits at most 5 s for
    // init to reap them, less than the host's stall. (An init that wrote
    // control lines blocking reaped none of them here.)
    const r = await bootWithStalledHost({
      port: "virtserialport",
      stallMs: 9000,
      flood: 2000,
      args: ["--delay", "2500", "--spawn-orphans", "3", "--exit", "3"],
    });
    assert.equal(orphansReaped(r.stdout), 3, r.stdout);
    const end = r.events.find((e) => e.kind === "agent-exit" || e.kind === "error");
    assert.equal(end?.kind, "agent-exit");
    assert.equal(end.kind === "agent-exit" ? end.status : -1, 3);
  });
});
