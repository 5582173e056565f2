import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, copyFile, realpath, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Writable } from "node:stream";
import { constants as osConstants } from "node:os";
import { A3sError } from "../errors.js";
import { kernelCmdlineArg, parseUserSpec } from "../layout/guest-config.js";
import { cacheRoot } from "../util/cache-dir.js";
import { requireTool } from "../util/host-tool.js";
import { chooseAccelerator, type Accelerator, type AcceleratorChoice } from "./accelerator.js";
import { prepareBootMedia, type ShareTransport } from "./boot-media.js";
import { controlLinesInConsole, LineSplitter, parseControlLine, type ControlEvent } from "./control-lines.js";
import { GuestChannel } from "./guest-channels.js";
import { detectBootImage } from "./image-kind.js";
import { resolveKernel } from "./resolve-kernel.js";
import { qemuArgs, type VmShare } from "./qemu-command.js";
import { dieWithParent } from "./die-with-parent.js";
import { DEFAULT_VIRTIOFS_SETTINGS, resolveVirtiofsd, startVirtiofsd, type Virtiofsd, type VirtiofsSettings } from "./virtiofsd.js";

export interface RunOptions {
  /** A cpio initramfs, an ext4/erofs/squashfs image, or a rootfs directory built by a3s-rootfs. */
  readonly image: string;
  /** A kernel image to boot instead of the Debian kernel; `modules` is its modules directory, if it needs any. */
  readonly kernel?: string;
  readonly modules?: string;
  /** Host directory shared read-write as /workspace. */
  readonly workspace?: string;
  /** Host directory shared read-only as /skills. */
  readonly skills?: string;
  readonly cpus?: number;
  readonly memoryMiB?: number;
  /** Seconds until the agent is sent SIGTERM (then SIGKILL after a grace period). */
  readonly timeoutS?: number;
  /** "root", "nobody", "UID" or "UID:GID"; default: the image's config. */
  readonly user?: string;
  /** More NAME=VALUE entries for the agent's environment. */
  readonly env?: readonly string[];
  /** Replace the agent's arguments. */
  readonly args?: readonly string[];
  readonly accel?: AcceleratorChoice;
  readonly transport?: ShareTransport | "auto";
  /** How virtiofsd serves the shares (virtio-fs only); unset fields keep DEFAULT_VIRTIOFS_SETTINGS. */
  readonly virtiofs?: Partial<VirtiofsSettings>;
  /** Where the agent's output goes live (besides being collected in the result). */
  readonly stdout?: Writable;
  readonly stderr?: Writable;
  readonly progress?: (message: string) => void;
  /** Aborting kills the VM and every helper at once. */
  readonly signal?: AbortSignal;
  /** Keep the kernel and init console log at this path. */
  readonly consoleLog?: string;
}

export interface BootTimeline {
  /** Host clock: the origin, when QEMU was started. Always 0. */
  readonly vmmStartMs: number;
  /** Guest clock (ms since the kernel started): init began. */
  readonly initStartMs: number | null;
  /** Guest clock: the agent's execve succeeded. */
  readonly agentStartMs: number | null;
  /** Guest clock: the agent was reaped. */
  readonly agentExitMs: number | null;
  /** Host clock: QEMU exited, ms after it was started. */
  readonly vmExitMs: number;
  /** Host clock: when the host learnt the agent had started, ms after QEMU was started. */
  readonly agentStartHostMs: number | null;
}

export interface RunResult {
  /** The agent's exit code, 128+N if signal N killed it, or 125/126/127 for a setup failure. */
  readonly exitCode: number;
  /** The signal that killed the agent ("SIGTERM"), or null. */
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly accel: Accelerator;
  readonly timeline: BootTimeline;
  readonly timedOut: boolean;
  /** init's message when it could not start the agent (exit code 125, 126 or 127). */
  readonly setupError: string | null;
  readonly transport: ShareTransport;
  readonly kernel: string;
}

/** How long an agent has to exit after SIGTERM on timeout, and the VM after SIGKILL. */
const TERM_GRACE_MS = 10_000;
const KILL_GRACE_MS = 5_000;
/** Output kept in the result (the live streams get everything). */
const MAX_COLLECTED = 16 << 20;

/**
 * Boots a rootfs in a QEMU microvm, runs its agent and returns how it ended.
 * Everything started here (QEMU, virtiofsd) is killed and every temporary
 * file removed before this returns or throws, whatever happens.
 */
export async function runRootfs(opts: RunOptions): Promise<RunResult> {
  return bootOnce(opts);
}

async function bootOnce(opts: RunOptions): Promise<RunResult> {
  const progress = opts.progress ?? (() => {});
  const qemu = requireTool("qemu-system-x86_64", "qemu-system-x86");
  const kind = await detectBootImage(opts.image);
  for (const [what, dir] of [["workspace", opts.workspace], ["skills", opts.skills]] as const) {
    if (dir !== undefined && !(await stat(dir).then((s) => s.isDirectory(), () => false))) {
      throw new A3sError("EUSAGE", `the ${what} ${dir} is not a directory`, { subject: dir });
    }
  }
  const work = await mkdtemp(join(tmpdir(), "a3s-run-"));
  const children: ChildProcess[] = [];
  const channels: GuestChannel[] = [];
  try {
    const kernel = await resolveKernel({ kernel: opts.kernel, modules: opts.modules, workDir: work, progress });
    const decision = await chooseAccelerator(opts.accel ?? "auto", qemu, kernel.kernelPath, cacheRoot());
    progress(`accelerator: ${decision.accel} (${decision.reason})`);

    const wanted = opts.transport ?? "auto";
    const virtiofsd = wanted === "9p" || (!opts.workspace && !opts.skills) ? undefined : await shareServer(wanted, progress);
    const transport: ShareTransport = virtiofsd ? "virtiofs" : wanted === "virtiofs" ? "virtiofs" : "9p";
    const virtiofsSettings = { ...DEFAULT_VIRTIOFS_SETTINGS, ...opts.virtiofs };
    const shares: VmShare[] = [];
    for (const [tag, dir, readOnly] of [["workspace", opts.workspace, false], ["skills", opts.skills, true]] as const) {
      if (dir === undefined) continue;
      const hostPath = await realpath(dir);
      const socket = join(work, `${tag}.vfs.sock`);
      if (virtiofsd) children.push(await startVirtiofsd(virtiofsd, { dir: hostPath, socket, readOnly }, virtiofsSettings));
      shares.push({ tag, hostPath, readOnly, socket });
    }
    progress(
      `shares: ${shares.length ? shares.map((s) => `${s.tag} (${s.readOnly ? "ro" : "rw"})`).join(", ") : "none"} over ${transport}` +
        (virtiofsd && shares.length ? ` (${virtiofsd.version}, ${virtiofsd.origin === "host" ? "the host's" : "provisioned"}; cache=${virtiofsSettings.cache})` : ""),
    );

    const media = await prepareBootMedia({ kind, image: opts.image, kernel, transport, workDir: work });
    progress(`image: ${kind}; ${media.modules.length} kernel modules`);

    const collected = { stdout: [] as Buffer[], stderr: [] as Buffer[], sizes: { stdout: 0, stderr: 0 } };
    const keep = (which: "stdout" | "stderr", chunk: Buffer): void => {
      (which === "stdout" ? opts.stdout : opts.stderr)?.write(chunk);
      if (collected.sizes[which] + chunk.length <= MAX_COLLECTED) {
        collected[which].push(chunk);
        collected.sizes[which] += chunk.length;
      }
    };
    const events: ControlEvent[] = [];
    let agentStartHostMs: number | null = null;
    let started = 0;
    // A timeout's SIGTERM is for the agent: if it fires while the guest is
    // still booting, it is sent the moment the agent starts.
    let termPending = false;
    let agentStarted = false;
    const splitter = new LineSplitter((line) => {
      const ev = parseControlLine(line);
      if (!ev) return;
      events.push(ev);
      if (ev.kind === "agent-start") {
        agentStartHostMs = performance.now() - started;
        agentStarted = true;
        if (termPending) escalate();
      }
    });
    const sockets = { stdout: join(work, "out.sock"), stderr: join(work, "err.sock"), control: join(work, "ctl.sock") };
    channels.push(await GuestChannel.listen(sockets.stdout, (b) => keep("stdout", b)));
    channels.push(await GuestChannel.listen(sockets.stderr, (b) => keep("stderr", b)));
    const control = await GuestChannel.listen(sockets.control, (b) => splitter.push(b));
    channels.push(control);

    const consoleLog = join(work, "console.log");
    const cmdline = await kernelCommandLine(decision.accel, opts);
    const args = qemuArgs({
      kernelPath: kernel.kernelPath,
      initrd: media.initrd,
      ...(media.disk ? { disk: media.disk } : {}),
      cmdline,
      accel: decision.accel,
      cpus: opts.cpus ?? 1,
      memoryMiB: opts.memoryMiB ?? 512,
      transport,
      shares,
      sockets,
      consoleLog,
    });

    started = performance.now();
    const vmCommand = dieWithParent(qemu, args);
    const vm = spawn(vmCommand.file, vmCommand.args, { stdio: ["ignore", "ignore", "pipe"] });
    children.push(vm);
    let qemuStderr = "";
    vm.stderr?.on("data", (b: Buffer) => (qemuStderr = (qemuStderr + b.toString()).slice(-8192)));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      vm.on("exit", (code, signal) => resolve({ code, signal })),
    );

    let timedOut = false;
    // The timeout's escalation: SIGTERM to the agent, SIGKILL after a grace
    // period, then the VM itself. The grace periods count from when SIGTERM
    // is really sent, which may be later than the timeout if the guest was
    // still booting then; a guest that never starts its agent is killed a
    // grace period after the timeout.
    const timers: NodeJS.Timeout[] = [];
    let bootDeadline: NodeJS.Timeout | undefined;
    const escalate = (): void => {
      if (bootDeadline) clearTimeout(bootDeadline);
      control.write("signal TERM\n");
      timers.push(setTimeout(() => control.write("signal KILL\n"), TERM_GRACE_MS));
      timers.push(setTimeout(() => vm.kill("SIGKILL"), TERM_GRACE_MS + KILL_GRACE_MS));
    };
    if (opts.timeoutS !== undefined) {
      timers.push(
        setTimeout(() => {
          timedOut = true;
          progress(`timeout after ${opts.timeoutS} s: sending SIGTERM to the agent`);
          if (agentStarted) return escalate();
          termPending = true;
          bootDeadline = setTimeout(() => vm.kill("SIGKILL"), TERM_GRACE_MS + KILL_GRACE_MS);
          timers.push(bootDeadline);
        }, opts.timeoutS * 1000),
      );
    }
    const onAbort = (): void => {
      vm.kill("SIGKILL");
    };
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    const exit = await exited;
    const vmExitMs = performance.now() - started;
    timers.forEach(clearTimeout);
    opts.signal?.removeEventListener("abort", onAbort);
    if (opts.signal?.aborted) throw new A3sError("EABORTED", "the run was interrupted; the VM was stopped");

    const consoleText = await readFile(consoleLog, "utf8").catch(() => "");
    if (opts.consoleLog) await copyFile(consoleLog, opts.consoleLog).catch(() => {});
    // Init reports early failures on the console, before the control channel exists.
    for (const ev of controlLinesInConsole(consoleText)) if (!events.some((e) => e.kind === ev.kind)) events.push(ev);

    const end = events.find((e) => e.kind === "agent-exit" || e.kind === "error");
    const at = (k: ControlEvent["kind"]): number | null => {
      const e = events.find((x) => x.kind === k);
      return e && "ms" in e ? e.ms : null;
    };
    const timeline: BootTimeline = {
      vmmStartMs: 0,
      initStartMs: at("init-start"),
      agentStartMs: at("agent-start"),
      agentExitMs: at("agent-exit"),
      vmExitMs: Math.round(vmExitMs),
      agentStartHostMs: agentStartHostMs === null ? null : Math.round(agentStartHostMs),
    };
    if (!end) {
      const tail = consoleText.replace(/\r/g, "").split("\n").slice(-15).join("\n");
      throw new A3sError(
        "EVM",
        `the VM stopped without reporting how the agent ended (QEMU ${exit.signal ? `killed by ${exit.signal}` : `exit status ${exit.code}`})` +
          `${qemuStderr.trim() ? `\nQEMU: ${qemuStderr.trim()}` : ""}\nlast console lines:\n${tail}`,
        { hint: "run with --console-log FILE to keep the whole console log" },
      );
    }
    const status = end.status;
    const signal = end.kind === "agent-exit" && status > 128 && status < 128 + 65 ? signalName(status - 128) : null;
    return {
      exitCode: status,
      signal,
      stdout: Buffer.concat(collected.stdout).toString(),
      stderr: Buffer.concat(collected.stderr).toString(),
      accel: decision.accel,
      timeline,
      timedOut,
      setupError: end.kind === "error" ? end.message : null,
      transport,
      kernel: kernel.origin,
    };
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once("exit", r)) : undefined)));
    channels.forEach((c) => c.close());
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * The virtiofsd for a run's shares (virtiofsd.ts: the host's, the cached one,
 * or one provisioned now), or undefined for 9p. With "auto", a virtiofsd
 * that cannot be provisioned (no network) means 9p, said in the progress
 * line; a cached one that fails verification is an error either way.
 */
async function shareServer(wanted: ShareTransport | "auto", progress: (m: string) => void): Promise<Virtiofsd | undefined> {
  try {
    const found = await resolveVirtiofsd({ cache: cacheRoot(), provision: true, progress });
    if (found) return found;
  } catch (e) {
    if (wanted === "virtiofs" || (e instanceof A3sError && e.code === "ECORRUPT")) throw e;
    progress(`virtiofsd: ${(e as Error).message.split("\n")[0]}; sharing over 9p instead`);
  }
  if (wanted === "virtiofs") {
    throw new A3sError("ETOOL", "no virtiofsd could be found or provisioned", { hint: "run: a3s-rootfs virtiofsd --fetch, or use --transport 9p" });
  }
  return undefined;
}

function signalName(n: number): string | null {
  const entry = Object.entries(osConstants.signals).find(([, v]) => v === n);
  return entry ? entry[0] : `SIG${n}`;
}

/**
 * The kernel command line: kernel and init messages on the serial console,
 * a panic ends the VM at once, and the run's overrides of the image's config
 * as a3s.* parameters (docs/guest-protocol.md §4).
 */
export async function kernelCommandLine(
  accel: Accelerator,
  opts: Pick<RunOptions, "user" | "env" | "args"> = {},
): Promise<string> {
  const parts = ["console=ttyS0", "panic=-1", "quiet"];
  if (accel === "tcg") {
    // Under TCG the guest's TSC calibration can fail on a busy host and hang
    // the boot; giving the host's frequency skips it.
    const khz = await hostTscKhz();
    if (khz) parts.push(`tsc_early_khz=${khz}`);
  }
  if (opts.user !== undefined) {
    const u = parseUserSpec(opts.user);
    parts.push(kernelCmdlineArg("user", `${u.uid}:${u.gid}`));
  }
  for (const e of opts.env ?? []) parts.push(kernelCmdlineArg("env", e));
  for (const a of opts.args ?? []) parts.push(kernelCmdlineArg("arg", a));
  const line = parts.join(" ");
  // x86's COMMAND_LINE_SIZE: a longer line is cut by the kernel, silently.
  if (line.length > 2047) {
    throw new A3sError("EUSAGE", `the kernel command line would be ${line.length} bytes, over the 2047 the kernel accepts`, {
      hint: "bake long arguments and environment into the image with a3s-rootfs build --agent-args/--env",
    });
  }
  return line;
}

async function hostTscKhz(): Promise<number | undefined> {
  const info = await readFile("/proc/cpuinfo", "utf8").catch(() => "");
  const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(info)?.[1];
  return mhz ? Math.round(Number(mhz) * 1000) : undefined;
}
