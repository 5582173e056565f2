import { spawn, type ChildProcess } from "node:child_process";
import { readFile, rm, copyFile, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Writable } from "node:stream";
import { constants as osConstants } from "node:os";
import { A3sError, isA3sError } from "../errors.js";
import { parseUserSpec } from "../layout/guest-config.js";
import { cacheRoot } from "../util/cache-dir.js";
import { requireTool } from "../util/host-tool.js";
import { chooseAccelerator, type Accelerator, type AcceleratorChoice } from "./accelerator.js";
import { prepareBootMedia, type ShareTransport } from "./boot-media.js";
import { checkGuestMemoryDir } from "./guest-memory-dir.js";
import { controlLinesInConsole, LineSplitter, parseControlLine, type ControlEvent } from "./control-lines.js";
import { GuestChannel } from "./guest-channels.js";
import { GuestConversation, type JobRequest } from "./guest-conversation.js";
import { memoizedFileSha256 } from "./file-digest.js";
import { hostTscKhz } from "./host-tsc.js";
import { QmpClient } from "./qmp.js";
import { prepareRestore, resumeRestored } from "./restore-machine.js";
import { checkSnapshotMatches, OpenSnapshot, type SnapshotExpectations, type SnapshotManifest } from "./snapshot-manifest.js";
import { discardWarmTemplate, warmTemplate } from "./warm-templates.js";
import { requireInitramfsInit } from "./image-init.js";
import { detectBootImage } from "./image-kind.js";
import { checkGuestMemory, initramfsFootprint, kernelSpanMiB, memoryNeed, type InitramfsFootprint, type MemoryNeed } from "./memory-need.js";
import { resolveVerityRoot, ROOT_VERIFICATION_FAILED, verityFailure, type VerityRoot } from "./verity-root.js";
import { resolveKernel } from "./resolve-kernel.js";
import type { MicrovmFirmware } from "./microvm-machine.js";
import { bootSpec } from "./boot-spec.js";
import { qemuArgs, type VmSpec } from "./qemu-command.js";
import { qemuLaunch, type QemuLaunchOptions } from "./qemu-launch.js";
import { createRunDirectory, sweepDeadRunDirectories } from "./run-directory.js";
import { startShares } from "./shares.js";
import { applyChangeSet, finishInterruptedApply } from "./change-set-apply.js";
import { ChangeSetReceiver } from "./change-set-receiver.js";
import { saveChangeSet } from "./change-set-save.js";
import { createScratchDisk, MIN_SCRATCH_DISK_MIB } from "./scratch-disk.js";
import { SCRATCH_DISK_SERIAL } from "./qemu-command.js";
import { checkTmpfsVolume } from "../layout/guest-config.js";
import type { VirtiofsSettings } from "./virtiofsd.js";

export { kernelCommandLine } from "./kernel-cmdline.js";

export interface RunOptions {
  /**
   * A cpio initramfs, an ext4/erofs/squashfs image, or a rootfs directory
   * built by a3s-rootfs. With `snapshot` it may be left out; given, it must
   * be the snapshot's image.
   */
  readonly image?: string;
  /**
   * Restore this snapshot (a directory `makeSnapshot` wrote) instead of
   * booting: its machine runs the job at once. The image, kernel and machine
   * options given must be the snapshot's; left out, the snapshot's apply.
   */
  readonly snapshot?: string;
  /** Restore the cached template for this image, kernel and machine, made on first use (docs/boot.md, "Snapshots"). */
  readonly warm?: boolean;
  /** A kernel image to boot instead of the Debian kernel; `modules` is its modules directory, if it needs any. */
  readonly kernel?: string;
  readonly modules?: string;
  /** Host directory shared read-write as /workspace. */
  readonly workspace?: string;
  /**
   * How the guest writes to the workspace (docs/boot.md, "Workspace modes"):
   * "live" (the default) writes through the share; "overlay" keeps the
   * agent's writes on guest-local storage and brings them back when it ends
   * as one change set, applied to the workspace (or saved to `changesFile`).
   */
  readonly workspaceMode?: WorkspaceMode;
  /** Overlay mode: write the change set (a tar with whiteouts) to this file instead of applying it. */
  readonly changesFile?: string;
  /** Overlay mode: the upper layer on a sparse ext4 scratch disk of this many MiB instead of a tmpfs (boots only). */
  readonly scratchDiskMiB?: number;
  /** Guest-local tmpfs volumes, "GUESTPATH" or "GUESTPATH:SIZE" (e.g. "/workspace/node_modules:2g"); nothing in them comes back. */
  readonly tmpfs?: readonly string[];
  /** Host directory shared read-only as /skills. */
  readonly skills?: string;
  readonly cpus?: number;
  /** Guest memory (default 512); one too small for the image is refused before QEMU starts (memory-need.ts). */
  readonly memoryMiB?: number;
  /**
   * Guest RAM in a file in this directory, a tmpfs mounted with huge=always
   * or a hugetlbfs, instead of anonymous memory or (with virtio-fs shares) a
   * memfd: 2 MiB host pages (guest-memory-dir.ts). Boots only.
   */
  readonly memoryDir?: string;
  /**
   * Seconds the agent may run, counted from its start (init's agent-start
   * line), not from the VM's: then SIGTERM, SIGKILL after a grace period.
   * A guest that has not started its agent BOOT_LIMIT_MS after QEMU started
   * is stopped and the run fails.
   */
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
  /**
   * The dm-verity root hash the image must match (64 hex digits). An image
   * built with --verity boots through dm-verity with or without it (its
   * IMAGE.verity.json gives the hash then); with it, a different hash
   * refuses to boot.
   */
  readonly rootHash?: string;
  /** Where `rootHash` came from, for the result: the user (default) or a pulled artifact's annotation. */
  readonly rootHashSource?: "--root-hash" | "registry";
}

export type WorkspaceMode = "live" | "overlay";

/** What became of an overlay-mode run's change set. */
export interface ChangeSetOutcome {
  /** "applied" to the workspace, "saved" to `path`, or "failed": nothing was applied (`error` says why). */
  readonly outcome: "applied" | "saved" | "failed";
  /** The tar's bytes and members (whiteouts included), as the guest reported them; null when it sent none. */
  readonly bytes: number | null;
  readonly entries: number | null;
  /** FIFOs, sockets and device nodes the agent made: never part of a change set. */
  readonly skipped: number | null;
  /** Applied: directories, files and symlinks written, and paths removed. */
  readonly written?: number;
  readonly removed?: number;
  /** Saved: the file. */
  readonly path?: string;
  readonly error?: string;
}

export interface BootTimeline {
  /** Host clock: the origin, when QEMU was started. Always 0. */
  readonly vmmStartMs: number;
  /**
   * Host clock: ms the host spent before it started QEMU: the kernel, the
   * boot media, the shares; for a restore, checking the snapshot (and
   * copying its memory for virtio-fs); with --warm, making a missing template.
   */
  readonly hostSetupMs: number;
  /** Guest clock (ms since the kernel started): init began. */
  readonly initStartMs: number | null;
  /** Guest clock: init was set up and began to wait for its job (`a3s ready`). */
  readonly readyMs: number | null;
  /**
   * Guest clock: init had its job (`a3s job`). jobMs − readyMs is the wait
   * for the host; (readyMs − initStartMs) + (agentStartMs − jobMs) is
   * init's own work.
   */
  readonly jobMs: number | null;
  /** Guest clock: the agent's execve succeeded. */
  readonly agentStartMs: number | null;
  /** Guest clock: the agent was reaped. */
  readonly agentExitMs: number | null;
  /** Host clock: QEMU exited, ms after it was started. */
  readonly vmExitMs: number;
  /** Host clock: when the host learnt the agent had started, ms after QEMU was started. */
  readonly agentStartHostMs: number | null;
  /** Host clock: when the host wrote the job (docs/guest-protocol.md §8), ms after QEMU was started. */
  readonly jobSentMs: number | null;
  /** Host clock: a restore (--snapshot, --warm): when the machine was restored and resumed, ms after QEMU was started; null for a boot. */
  readonly restoreMs: number | null;
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
  /** The firmware the machine started through: qboot where QEMU ships it, else QEMU's default (microvm-machine.ts); a restore's is its snapshot's. */
  readonly firmware: MicrovmFirmware;
  /** Whether the machine had ACPI: not for the microVM kernel under TCG (bootsWithoutAcpi, machine-acpi.ts); a restore's is its snapshot's. */
  readonly acpi: boolean;
  /** The root hash the guest's root was verified against (dm-verity), and where it came from; null without verity. */
  readonly rootVerity: { readonly rootHash: string; readonly source: VerityRoot["source"] } | null;
  /** The workspace's mode; null without a workspace. */
  readonly workspaceMode: WorkspaceMode | null;
  /** Overlay mode: what became of the change set; null in live mode. */
  readonly changes: ChangeSetOutcome | null;
}

const DEFAULT_MEMORY_MIB = 512;
/** How long an agent has to exit after SIGTERM on timeout, and the VM after SIGKILL. */
const TERM_GRACE_MS = 10_000;
const KILL_GRACE_MS = 5_000;
/**
 * With --timeout, how long the guest may take from QEMU's start to its
 * agent's: far beyond any boot measured (under 15 s with Debian's kernel
 * under TCG on a loaded 2-core host), so it only ends boots that hang.
 */
const BOOT_LIMIT_MS = 120_000;
/** Output kept in the result (the live streams get everything). */
const MAX_COLLECTED = 16 << 20;

/**
 * Boots a rootfs in a QEMU microvm, runs its agent and returns how it ended.
 * Everything started here (QEMU, virtiofsd) is killed and every temporary
 * file removed before this returns or throws, whatever happens.
 *
 * The steps: check the request, choose a kernel and an accelerator, start
 * the shares, prepare the boot media, listen on the guest's channels, start
 * QEMU, watch the timeout, and read how the agent ended.
 */
export async function runRootfs(opts: RunOptions): Promise<RunResult> {
  const guest = new GuestOutput(opts);
  const progress = opts.progress ?? (() => {});
  const qemu = requireTool("qemu-system-x86_64", "qemu-system-x86");
  if (opts.snapshot !== undefined || opts.warm) return runRestored(opts, qemu, guest, progress);
  if (opts.image === undefined) throw new A3sError("EUSAGE", "run needs an IMAGE to boot (or a snapshot to restore)");
  const image = opts.image;
  const kind = await detectBootImage(image);
  const verity = await resolveVerityRoot(image, kind, opts.rootHash, opts.rootHashSource);
  await requireInitramfsInit(kind, image);
  await checkShareDirectories(opts);
  checkWorkspaceOptions(opts, false);
  if (opts.workspace !== undefined && (await finishInterruptedApply(opts.workspace))) {
    progress(`finished applying a change set that an earlier, killed run or apply had committed to ${opts.workspace}`);
  }
  // What a cpio image unpacks to is read now, while the kernel, the shares
  // and the boot media are made ready: a large compressed image takes a
  // fraction of a second to read through (memory-need.ts).
  const memoryMiB = opts.memoryMiB ?? DEFAULT_MEMORY_MIB;
  const imageFootprint = kind === "cpio" ? initramfsFootprint(opts.image, 0, memoryMiB * 2 ** 20) : undefined;
  imageFootprint?.catch(() => undefined); // awaited below; a failure before that is not unhandled
  const swept = await sweepDeadRunDirectories();
  if (swept.length) progress(`removed ${swept.length} run director${swept.length === 1 ? "y" : "ies"} left by runs that were killed`);
  const memoryDir = opts.memoryDir !== undefined ? await checkGuestMemoryDir(opts.memoryDir, memoryMiB) : undefined;
  const work = await createRunDirectory();
  const started = new StartedProcesses();
  try {
    const kernel = await resolveKernel({ kernel: opts.kernel, modules: opts.modules, workDir: work, progress });
    const decision = await chooseAccelerator(opts.accel ?? "auto", qemu, kernel.kernelPath, cacheRoot());
    progress(`accelerator: ${decision.accel} (${decision.reason})`);
    const { transport, shares } = await startShares(opts, work, started.children, progress);
    const scratchDisk = opts.scratchDiskMiB !== undefined ? await createScratchDisk(work, opts.scratchDiskMiB, opts.signal) : undefined;
    const media = await prepareBootMedia({
      kind,
      image,
      kernel,
      transport,
      verity: verity !== undefined,
      scratchDisk: scratchDisk !== undefined,
      // This VM runs this one job: modules only for what it uses.
      jobs: { shares: shares.length > 0, overlay: opts.workspaceMode === "overlay" },
      workDir: work,
    });
    progress(`image: ${kind}; ${media.modules.length} kernel modules`);
    checkGuestMemory(memoryMiB, await bootMemoryNeed(opts.image, imageFootprint, kernel.kernelPath, media.initrd), opts.image, kernel.origin);

    const { sockets, control, changes } = await listenToGuest(work, guest, started, opts.workspaceMode === "overlay");
    // The job goes out once init holds the control channel for good: after
    // the switch to a disk root (init may open the channel anew there, and
    // the kernel drops what a closed port had not read), else at once.
    guest.converse(new GuestConversation(control, jobRequest(opts, shares.map((s) => s.tag), scratchDisk !== undefined), media.disk ? "root-ready" : "init-start"));
    const consoleLog = join(work, "console.log");
    const boot = await bootSpec({ qemu, kernel, media, accel: decision.accel, ...(verity ? { verity } : {}) });
    const args = qemuArgs({
      ...boot.spec,
      cpus: opts.cpus ?? 1,
      memoryMiB,
      transport,
      shares,
      sockets,
      consoleLog,
      ...(scratchDisk ? { scratchDisk } : {}),
      ...(memoryDir ? { memoryDir } : {}),
    });
    if (memoryDir) progress(`guest memory: a file in ${memoryDir.path} (${memoryDir.hugetlbfs ? "hugetlbfs" : "tmpfs"})`);
    const vm = await runVm(qemu, args, { accel: decision.accel, memoryDir: memoryDir !== undefined }, { guest, control, started }, opts, progress);
    const end = await readOutcome(guest, consoleLog, vm, opts);
    const changeSet = await takeChangeSet(opts, guest, changes, end, progress);
    return resultOf(end, guest, vm, { accel: decision.accel, transport, kernel: kernel.origin, firmware: boot.firmware, acpi: boot.acpi }, changeSet, verity);
  } finally {
    await started.stop();
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * A run from a snapshot (`snapshot`, or the cached template with `warm`):
 * the snapshot is checked against what the run asks for, its machine is
 * started with `-incoming defer`, restored and resumed, and the job is sent
 * at once (its init is waiting for it). The rest is as in a boot.
 */
async function runRestored(opts: RunOptions, qemu: string, guest: GuestOutput, progress: (message: string) => void): Promise<RunResult> {
  if (opts.snapshot !== undefined && opts.warm) throw new A3sError("EUSAGE", "--snapshot and --warm exclude each other: --warm uses a snapshot of its own");
  if (opts.memoryDir !== undefined) {
    throw new A3sError("EUSAGE", "--memory-dir needs a boot: a restored machine maps its snapshot's memory file", { hint: "leave out --snapshot/--warm, or --memory-dir" });
  }
  await checkShareDirectories(opts);
  checkWorkspaceOptions(opts, true);
  if (opts.workspace !== undefined && (await finishInterruptedApply(opts.workspace))) {
    progress(`finished applying a change set that an earlier, killed run or apply had committed to ${opts.workspace}`);
  }
  const path = opts.snapshot ?? (await warmTemplateFor(opts, progress)).path;
  const snapshot = await OpenSnapshot.open(path);
  const work = await createRunDirectory();
  const started = new StartedProcesses();
  try {
    checkSnapshotMatches(snapshot, await snapshotExpectations(opts, snapshot.manifest));
    const m = snapshot.manifest;
    progress(`snapshot: ${path} (${m.image.kind} ${m.image.path}, ${m.kernel.origin}; ${m.machine.accel}, ${m.machine.cpus} CPU, ${m.machine.memoryMiB} MiB, shares over ${m.machine.transport})`);
    const plan = await prepareRestore(snapshot, { qemu, workspace: opts.workspace, skills: opts.skills, work, children: started.children });
    const { sockets, control, changes } = await listenToGuest(work, guest, started, true);
    const conversation = new GuestConversation(control, jobRequest(opts, plan.providedShares, false));
    guest.converse(conversation);
    const qmpSocket = join(work, "qmp.sock");
    const qmp = await QmpClient.listen(qmpSocket);
    started.channels.push(qmp);
    const consoleLog = join(work, "console.log");
    const args = qemuArgs({ ...plan.spec, sockets, consoleLog, qmpSocket });
    const vm = await runVm(qemu, args, { accel: m.machine.accel, restore: true }, { guest, control, started }, opts, progress, async () => {
      try {
        await resumeRestored(qmp, snapshot, opts.signal);
      } catch (e) {
        // A template QEMU cannot read any more is made again by the next run.
        if (opts.warm && isA3sError(e, "ESNAPSHOT")) await discardWarmTemplate(path);
        throw e;
      }
      await plan.mapped();
      guest.restored();
      conversation.sendJob();
    });
    const end = await readOutcome(guest, consoleLog, vm, opts);
    const changeSet = await takeChangeSet(opts, guest, changes, end, progress);
    return resultOf(
      end,
      guest,
      vm,
      { accel: m.machine.accel, transport: m.machine.transport, kernel: m.kernel.origin, firmware: m.machine.firmware ?? "default", acpi: m.machine.acpi !== false },
      changeSet,
    );
  } finally {
    await started.stop();
    snapshot.close();
    await rm(work, { recursive: true, force: true });
  }
}

function warmTemplateFor(opts: RunOptions, progress: (message: string) => void): Promise<{ path: string }> {
  if (opts.image === undefined) throw new A3sError("EUSAGE", "--warm needs the IMAGE whose template to use");
  return warmTemplate({
    image: opts.image,
    kernel: opts.kernel,
    modules: opts.modules,
    cpus: opts.cpus ?? 1,
    memoryMiB: opts.memoryMiB ?? DEFAULT_MEMORY_MIB,
    accel: opts.accel ?? "auto",
    transport: opts.transport ?? "auto",
    progress,
    signal: opts.signal,
  });
}

/**
 * What the run asks of a snapshot: only what it states (a snapshot's own
 * options apply to the rest), and always, under TCG, this host's TSC rate.
 */
async function snapshotExpectations(opts: RunOptions, m: SnapshotManifest): Promise<SnapshotExpectations> {
  const memo = join(cacheRoot(), "digests");
  let kernel: SnapshotExpectations["kernel"];
  if (opts.kernel !== undefined) {
    const scratch = await createRunDirectory();
    try {
      const k = await resolveKernel({ kernel: opts.kernel, modules: opts.modules, workDir: scratch });
      kernel = { origin: k.origin, path: k.kernelPath, sha256: (await memoizedFileSha256(k.kernelPath, memo)).sha256 };
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }
  return {
    ...(opts.image !== undefined ? { imageSha256: (await memoizedFileSha256(opts.image, memo)).sha256, imagePath: opts.image } : {}),
    ...(kernel ? { kernel } : {}),
    ...(opts.accel !== undefined && opts.accel !== "auto" ? { accel: opts.accel } : {}),
    ...(opts.cpus !== undefined ? { cpus: opts.cpus } : {}),
    ...(opts.memoryMiB !== undefined ? { memoryMiB: opts.memoryMiB } : {}),
    ...(opts.transport !== undefined && opts.transport !== "auto" ? { transport: opts.transport } : {}),
    ...(m.machine.accel === "tcg" ? { tscKhz: (await hostTscKhz()) ?? null } : {}),
  };
}

function resultOf(
  end: Extract<ControlEvent, { kind: "agent-exit" | "error" }>,
  guest: GuestOutput,
  vm: { exitMs: number; timedOut: boolean },
  machine: { accel: Accelerator; transport: ShareTransport; kernel: string; firmware: MicrovmFirmware; acpi: boolean },
  changes: { mode: WorkspaceMode | null; outcome: ChangeSetOutcome | null },
  verity?: VerityRoot,
): RunResult {
  return {
    exitCode: end.status,
    signal: end.kind === "agent-exit" && end.status > 128 && end.status < 128 + 65 ? signalName(end.status - 128) : null,
    stdout: guest.text("stdout"),
    stderr: guest.text("stderr"),
    accel: machine.accel,
    timeline: timelineOf(guest, vm.exitMs),
    timedOut: vm.timedOut,
    setupError: end.kind === "error" ? end.message : null,
    transport: machine.transport,
    kernel: machine.kernel,
    firmware: machine.firmware,
    acpi: machine.acpi,
    rootVerity: verity ? { rootHash: verity.rootHash, source: verity.source } : null,
    workspaceMode: changes.mode,
    changes: changes.outcome,
  };
}

/** What runRootfs started: killed and closed when it ends, whatever happens. */
class StartedProcesses {
  readonly children: ChildProcess[] = [];
  readonly channels: { close(): void }[] = [];

  async stop(): Promise<void> {
    const running = this.children.filter((c) => c.exitCode === null && c.signalCode === null);
    for (const c of running) c.kill("SIGKILL");
    await Promise.all(running.map((c) => new Promise((r) => c.once("exit", r))));
    this.channels.forEach((c) => c.close());
  }
}

/**
 * The memory this boot needs (memory-need.ts): the kernel's span, the initrd
 * as booted, and what it unpacks to. A cpio image's own footprint
 * (`imageFootprint`, read through its headers) and the module archive
 * appended after it are counted apart; a rootfs directory was packed into
 * the initrd, and a disk image's initrd is only the init and its config.
 */
async function bootMemoryNeed(
  image: string,
  imageFootprint: Promise<InitramfsFootprint> | undefined,
  kernelPath: string,
  initrd: string,
): Promise<MemoryNeed> {
  let unpacked;
  if (imageFootprint) {
    const own = await imageFootprint;
    const appended = await initramfsFootprint(initrd, (await stat(image)).size);
    unpacked = { pages: own.pages + appended.pages, entries: own.entries + appended.entries };
  } else {
    unpacked = await initramfsFootprint(initrd);
  }
  return memoryNeed(await kernelSpanMiB(kernelPath), (await stat(initrd)).size, unpacked);
}

async function checkShareDirectories(opts: RunOptions): Promise<void> {
  for (const [what, dir] of [["workspace", opts.workspace], ["skills", opts.skills]] as const) {
    if (dir !== undefined && !(await stat(dir).then((s) => s.isDirectory(), () => false))) {
      throw new A3sError("EUSAGE", `the ${what} ${dir} is not a directory`, { subject: dir });
    }
  }
}

/**
 * What the guest sends back during a run: the agent's stdout and stderr
 * (passed on live, and kept up to MAX_COLLECTED each) and init's control
 * events, with the host time the agent started.
 */
class GuestOutput {
  readonly events: ControlEvent[] = [];
  agentStartHostMs: number | null = null;
  /** Called when init reports that the agent started. */
  onAgentStart: () => void = () => undefined;
  private vmStart = 0;
  private conversation: GuestConversation | undefined;
  private readonly collected = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
  private readonly sizes = { stdout: 0, stderr: 0 };
  readonly control = new LineSplitter((line) => this.controlLine(line));

  /** performance.now() when the run began (before the kernel, media, shares or snapshot were prepared). */
  private readonly runStart = performance.now();

  constructor(private readonly live: Pick<RunOptions, "stdout" | "stderr">) {}

  /** Host ms from the run's start to QEMU's. */
  setupMs(): number {
    return this.vmStart - this.runStart;
  }

  /** The host's half of the control channel: the job, and the power-off once all output is in. */
  converse(conversation: GuestConversation): void {
    this.conversation = conversation;
  }

  private restoredAt: number | null = null;

  /** A restore: the machine runs again (its init waits for the job). */
  restored(): void {
    this.restoredAt = performance.now();
  }

  restoredMs(): number | null {
    return this.restoredAt === null ? null : this.restoredAt - this.vmStart;
  }

  /** Host ms after QEMU started when the job was written, or null. */
  jobSentMs(): number | null {
    const at = this.conversation?.jobSentAt ?? null;
    return at === null ? null : at - this.vmStart;
  }

  /** Bytes of the change set read from its channel. */
  changeBytes(n: number): void {
    this.conversation?.output("changes", n);
  }

  /** Passes a chunk on; while the live stream is full, a promise that holds the channel until it drains. */
  keep(which: "stdout" | "stderr", chunk: Buffer): Promise<void> | undefined {
    this.conversation?.output(which, chunk.length);
    if (this.sizes[which] + chunk.length <= MAX_COLLECTED) {
      this.collected[which].push(chunk);
      this.sizes[which] += chunk.length;
    }
    const live = this.live[which];
    // A stream that is gone (a reader that stopped, `| head`) takes nothing more, and holds nothing.
    if (!live || live.destroyed || live.writableEnded || live.write(chunk) || live.destroyed) return undefined;
    return new Promise<void>((resolve) => {
      const done = (): void => {
        live.off("drain", done).off("close", done).off("error", done);
        resolve();
      };
      live.on("drain", done).on("close", done).on("error", done);
    });
  }

  text(which: "stdout" | "stderr"): string {
    return Buffer.concat(this.collected[which]).toString();
  }

  /** The origin of the host times: QEMU is started now. */
  vmStarted(): void {
    this.vmStart = performance.now();
  }

  private controlLine(line: string): void {
    const ev = parseControlLine(line);
    if (!ev) return;
    this.events.push(ev);
    this.conversation?.event(ev);
    if (ev.kind === "agent-start") {
      this.agentStartHostMs = performance.now() - this.vmStart;
      this.onAgentStart();
    }
  }
}

/**
 * Listens on the guest's channels (stdout, stderr, control and, when the
 * machine has its port, the change set) before QEMU connects to them.
 * `changesPort`: a boot has the port only when its job's workspace is in
 * overlay mode (qemu-command.ts lastPort); a restored snapshot's machine
 * always has it, since the device set must be the one it was saved with.
 */
async function listenToGuest(
  work: string,
  guest: GuestOutput,
  started: StartedProcesses,
  changesPort: boolean,
): Promise<{ sockets: VmSpec["sockets"]; control: GuestChannel; changes: ChangeSetReceiver | undefined }> {
  const base = { stdout: join(work, "out.sock"), stderr: join(work, "err.sock"), control: join(work, "ctl.sock") };
  const sockets: VmSpec["sockets"] = changesPort ? { ...base, changes: join(work, "chg.sock") } : base;
  let receiver: ChangeSetReceiver | undefined;
  if (sockets.changes !== undefined) {
    const listening = await ChangeSetReceiver.listen(work, sockets.changes, (n) => guest.changeBytes(n));
    receiver = listening.receiver;
    started.channels.push(listening.channel);
  }
  started.channels.push(await GuestChannel.listen(sockets.stdout, (b) => guest.keep("stdout", b)));
  started.channels.push(await GuestChannel.listen(sockets.stderr, (b) => guest.keep("stderr", b)));
  const control = await GuestChannel.listen(sockets.control, (b) => guest.control.push(b));
  started.channels.push(control);
  return { sockets, control, changes: receiver };
}

/** Runs QEMU until it exits, with the timeout and the caller's abort watching it. */
async function runVm(
  qemu: string,
  args: readonly string[],
  launch: QemuLaunchOptions,
  { guest, control, started }: { guest: GuestOutput; control: GuestChannel; started: StartedProcesses },
  opts: RunOptions,
  progress: (message: string) => void,
  afterSpawn?: () => Promise<void>,
): Promise<VmEnd> {
  guest.vmStarted();
  const t0 = performance.now();
  // The VM dies with this process even when it is SIGKILLed; under TCG it runs without huge pages (qemu-launch.ts).
  const vmCommand = qemuLaunch(qemu, args, launch);
  const vm = spawn(vmCommand.file, vmCommand.args, { stdio: ["ignore", "ignore", "pipe"] });
  started.children.push(vm);
  let stderr = "";
  vm.stderr?.on("data", (b: Buffer) => (stderr = (stderr + b.toString()).slice(-8192)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => vm.on("exit", (code, signal) => resolve({ code, signal })));
  const timeout = new TimeoutWatch(opts.timeoutS, vm, control, progress);
  guest.onAgentStart = () => timeout.agentStarted();
  const onAbort = (): void => {
    vm.kill("SIGKILL");
  };
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  // A restore's steps once QEMU runs (restore-machine.ts); if one fails, the VM goes.
  let afterSpawnError: unknown;
  afterSpawn?.().catch((e: unknown) => {
    afterSpawnError = e;
    vm.kill("SIGKILL");
  });
  const exit = await exited;
  const exitMs = performance.now() - t0;
  timeout.clear();
  opts.signal?.removeEventListener("abort", onAbort);
  if (opts.signal?.aborted) throw new A3sError("EABORTED", "the run was interrupted; the VM was stopped");
  if (afterSpawnError !== undefined) throw afterSpawnError;
  return { ...exit, stderr, exitMs, timedOut: timeout.timedOut, bootExpired: timeout.bootExpired };
}

/** How QEMU ended, and whether the timeout or the boot limit ended it. */
interface VmEnd {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stderr: string;
  readonly exitMs: number;
  readonly timedOut: boolean;
  readonly bootExpired: boolean;
}

/**
 * `--timeout`: the agent gets `timeoutS` seconds from its start, the moment
 * the host reads init's agent-start line; then SIGTERM through the control
 * channel, SIGKILL TERM_GRACE_MS later, and the VM is killed KILL_GRACE_MS
 * after that. The boot does not count against it: under TCG a slow boot
 * alone could otherwise use up a short timeout before the agent ran at all.
 * Instead, a guest that has not started its agent BOOT_LIMIT_MS after QEMU
 * started is stopped (the kernel or init hung) and the run fails saying so.
 * Without a timeout nothing is limited.
 */
class TimeoutWatch {
  /** The agent's time ran out. */
  timedOut = false;
  /** The guest never started its agent. */
  bootExpired = false;
  private readonly timers: NodeJS.Timeout[] = [];
  private bootLimit: NodeJS.Timeout | undefined;
  private agentSeen = false;

  constructor(
    private readonly timeoutS: number | undefined,
    private readonly vm: ChildProcess,
    private readonly control: GuestChannel,
    private readonly progress: (message: string) => void,
  ) {
    if (timeoutS === undefined) return;
    this.bootLimit = setTimeout(() => {
      this.bootExpired = true;
      progress(`the guest has not started its agent ${BOOT_LIMIT_MS / 1000} s after the VM started: stopping the VM`);
      vm.kill("SIGKILL");
    }, BOOT_LIMIT_MS);
    this.timers.push(this.bootLimit);
  }

  agentStarted(): void {
    if (this.timeoutS === undefined || this.agentSeen) return;
    this.agentSeen = true;
    clearTimeout(this.bootLimit);
    const timeoutS = this.timeoutS;
    this.timers.push(
      setTimeout(() => {
        this.timedOut = true;
        this.progress(`timeout: the agent has run ${timeoutS} s; sending it SIGTERM`);
        this.control.write("signal TERM\n");
        this.timers.push(setTimeout(() => this.control.write("signal KILL\n"), TERM_GRACE_MS));
        this.timers.push(setTimeout(() => this.vm.kill("SIGKILL"), TERM_GRACE_MS + KILL_GRACE_MS));
      }, timeoutS * 1000),
    );
  }

  clear(): void {
    this.timers.forEach(clearTimeout);
  }
}

/**
 * How the agent ended (its exit, or init's setup error), from the control
 * channel and, for failures before the channel existed, the console log;
 * an error with the console's last lines when the VM stopped without saying.
 */
async function readOutcome(
  guest: GuestOutput,
  consoleLog: string,
  vm: VmEnd,
  opts: RunOptions,
): Promise<Extract<ControlEvent, { kind: "agent-exit" | "error" }>> {
  const consoleText = await readFile(consoleLog, "utf8").catch(() => "");
  if (opts.consoleLog) await copyFile(consoleLog, opts.consoleLog).catch(() => {});
  // Init reports early failures on the console, before the control channel exists.
  for (const ev of controlLinesInConsole(consoleText)) if (!guest.events.some((e) => e.kind === ev.kind)) guest.events.push(ev);
  const end = guest.events.find((e): e is Extract<ControlEvent, { kind: "agent-exit" | "error" }> => e.kind === "agent-exit" || e.kind === "error");
  if (end?.kind === "error" && /unknown key "a3s\.job=1"/.test(end.message)) {
    // An init from before guest protocol 2 cannot wait for its job.
    return { ...end, message: `${end.message} (the image's init is older than guest protocol 2: rebuild the image with this a3s-rootfs)` };
  }
  if (end?.kind === "error" && /unknown key "(overlay|scratch|tmpfs)"/.test(end.message)) {
    return { ...end, message: `${end.message} (the image's init predates workspace modes and --tmpfs: rebuild the image with this a3s-rootfs)` };
  }
  if (end) return end;
  const corrupt = verityFailure(consoleText);
  if (corrupt) {
    return { kind: "error", status: ROOT_VERIFICATION_FAILED, message: `the root filesystem failed verification (${corrupt}); the VM was stopped` };
  }
  const tail = consoleText.replace(/\r/g, "").split("\n").slice(-15).join("\n");
  if (vm.bootExpired) {
    throw new A3sError("EVM", `the guest did not start its agent within ${BOOT_LIMIT_MS / 1000} s of the VM starting; the VM was stopped\nlast console lines:\n${tail}`, {
      hint: "the kernel or init hung: run with --console-log FILE to keep the whole console log (--timeout counts from the agent's start)",
    });
  }
  throw new A3sError(
    "EVM",
    `the VM stopped without reporting how the agent ended (QEMU ${vm.signal ? `killed by ${vm.signal}` : `exit status ${vm.code}`})` +
      `${vm.stderr.trim() ? `\nQEMU: ${vm.stderr.trim()}` : ""}\nlast console lines:\n${tail}`,
    { hint: "run with --console-log FILE to keep the whole console log" },
  );
}

function timelineOf(guest: GuestOutput, vmExitMs: number): BootTimeline {
  const at = (k: ControlEvent["kind"]): number | null => {
    const e = guest.events.find((x) => x.kind === k);
    return e && "ms" in e ? e.ms : null;
  };
  return {
    vmmStartMs: 0,
    hostSetupMs: Math.round(guest.setupMs()),
    initStartMs: at("init-start"),
    readyMs: at("ready"),
    jobMs: at("job"),
    agentStartMs: at("agent-start"),
    agentExitMs: at("agent-exit"),
    vmExitMs: Math.round(vmExitMs),
    agentStartHostMs: guest.agentStartHostMs === null ? null : Math.round(guest.agentStartHostMs),
    jobSentMs: roundOrNull(guest.jobSentMs()),
    restoreMs: roundOrNull(guest.restoredMs()),
  };
}

function roundOrNull(ms: number | null): number | null {
  return ms === null ? null : Math.round(ms);
}

/**
 * The run's job: its arguments, environment and user (each only when the
 * run sets it: the image's config keeps the rest) and the tags of the
 * shares this host provides.
 */
function jobRequest(opts: RunOptions, providedShares: readonly string[], scratchDisk: boolean): JobRequest {
  return {
    ...(opts.args?.length ? { args: [...opts.args] } : {}),
    ...(opts.env?.length ? { env: [...opts.env] } : {}),
    ...(opts.user !== undefined ? { user: parseUserSpec(opts.user) } : {}),
    providedShares: [...providedShares],
    ...(opts.workspaceMode === "overlay" ? { overlay: "workspace" } : {}),
    ...(scratchDisk ? { scratch: SCRATCH_DISK_SERIAL } : {}),
    ...(opts.tmpfs?.length ? { tmpfs: [...opts.tmpfs] } : {}),
  };
}

/** The workspace options fit together (checked before anything starts). */
function checkWorkspaceOptions(opts: RunOptions, restore: boolean): void {
  const overlay = opts.workspaceMode === "overlay";
  if (opts.workspaceMode !== undefined && opts.workspaceMode !== "live" && !overlay) {
    throw new A3sError("EUSAGE", `the workspace mode must be live or overlay, not ${JSON.stringify(opts.workspaceMode)}`);
  }
  if (overlay && opts.workspace === undefined) throw new A3sError("EUSAGE", "--workspace-mode overlay needs a --workspace");
  if (opts.changesFile !== undefined && !overlay) throw new A3sError("EUSAGE", "--changes needs --workspace-mode overlay: a live workspace has no change set");
  if (opts.scratchDiskMiB !== undefined) {
    if (!overlay) throw new A3sError("EUSAGE", "--scratch-disk holds the overlay's upper layer: it needs --workspace-mode overlay");
    if (restore) throw new A3sError("EUSAGE", "--scratch-disk needs a boot: a snapshot's machine has no slot for a disk it did not have", { hint: "leave out --snapshot/--warm, or use the tmpfs upper layer (no --scratch-disk)" });
    if (!Number.isInteger(opts.scratchDiskMiB) || opts.scratchDiskMiB < MIN_SCRATCH_DISK_MIB) {
      throw new A3sError("EUSAGE", `the scratch disk must be a whole number of MiB, at least ${MIN_SCRATCH_DISK_MIB}, not ${opts.scratchDiskMiB}`);
    }
  }
  for (const t of opts.tmpfs ?? []) {
    try {
      checkTmpfsVolume(t);
    } catch (e) {
      throw new A3sError("EUSAGE", `--tmpfs: ${(e as Error).message.replace(/^tmpfs volume /, "")}`, { subject: t });
    }
  }
}

/**
 * Overlay mode, once the VM has ended: the change set is applied to the
 * workspace (or saved to `changesFile`) only when init reported the agent's
 * end and the whole set, and exactly the bytes it reported arrived; then
 * only if every rule of change-set.ts holds. Anything else applies nothing
 * and says why. A run interrupted before this point (the VM killed, the
 * CLI signalled) never gets here: nothing is applied.
 */
async function takeChangeSet(
  opts: RunOptions,
  guest: GuestOutput,
  receiver: ChangeSetReceiver | undefined,
  end: Extract<ControlEvent, { kind: "agent-exit" | "error" }>,
  progress: (message: string) => void,
): Promise<{ mode: WorkspaceMode | null; outcome: ChangeSetOutcome | null }> {
  const mode: WorkspaceMode | null = opts.workspace === undefined ? null : (opts.workspaceMode ?? "live");
  if (mode !== "overlay" || opts.workspace === undefined) return { mode, outcome: null };
  // An overlay-mode run's machine always has the change-set port (listenToGuest).
  if (!receiver) throw new Error("internal: an overlay-mode run without a change-set port");
  const reported = guest.events.find((e): e is Extract<ControlEvent, { kind: "changes" }> => e.kind === "changes");
  const counts = { bytes: reported?.bytes ?? null, entries: reported?.entries ?? null, skipped: reported?.skipped ?? null };
  const failed = (error: string, nothingApplied = true): { mode: WorkspaceMode; outcome: ChangeSetOutcome } => {
    progress(`change set: ${error}${nothingApplied ? `; nothing was applied to ${opts.workspace}` : ""}`);
    return { mode, outcome: { outcome: "failed", ...counts, error } };
  };
  try {
    await receiver.close();
  } catch (e) {
    return failed(`could not be kept on the host: ${(e as Error).message}`);
  }
  const guestError = guest.events.find((e): e is Extract<ControlEvent, { kind: "changes-error" }> => e.kind === "changes-error");
  if (end.kind !== "agent-exit") return failed("the agent never ran (init reported a setup error), so there is no change set");
  if (guestError) return failed(`the guest could not write it: ${guestError.message}`);
  if (!reported) return failed("the guest did not send one");
  if (receiver.bytes !== reported.bytes) return failed(`${receiver.bytes} of the ${reported.bytes} bytes the guest sent arrived`);
  try {
    if (opts.changesFile !== undefined) {
      await saveChangeSet(receiver.path, opts.changesFile);
      progress(`change set: ${reported.entries} entries (${reported.bytes} bytes) saved to ${opts.changesFile}; apply it with: a3s-rootfs apply ${opts.changesFile} ${opts.workspace}`);
      return { mode, outcome: { outcome: "saved", ...counts, path: opts.changesFile } };
    }
    const applied = await applyChangeSet(receiver.path, opts.workspace, { label: "the run's change set" });
    progress(`change set: ${applied.written} written, ${applied.removed} removed in ${opts.workspace}`);
    return { mode, outcome: { outcome: "applied", ...counts, written: applied.written, removed: applied.removed } };
  } catch (e) {
    // A refused set changed nothing; an apply stopped past its commit point says so itself (its journal finishes it).
    return failed((e as Error).message, !/journal .* is kept/.test(isA3sError(e) ? (e.hint ?? "") : ""));
  }
}

function signalName(n: number): string | null {
  const entry = Object.entries(osConstants.signals).find(([, v]) => v === n);
  return entry ? entry[0] : `SIG${n}`;
}
