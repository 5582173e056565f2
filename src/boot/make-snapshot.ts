import { spawn, type ChildProcess } from "node:child_process";
import { constants as fsConstants } from "node:fs";
import { chmod, copyFile, lstat, mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { A3sError } from "../errors.js";
import { temporaryPathFor, writeAtomically } from "../outputs/atomic.js";
import { cacheRoot } from "../util/cache-dir.js";
import { requireTool, runTool } from "../util/host-tool.js";
import { chooseAccelerator, type Accelerator, type AcceleratorChoice } from "./accelerator.js";
import { prepareBootMedia, type ShareTransport } from "./boot-media.js";
import { qemuLaunch } from "./qemu-launch.js";
import { controlLinesInConsole, LineSplitter, parseControlLine, type ControlEvent } from "./control-lines.js";
import { memoizedFileSha256 } from "./file-digest.js";
import { GuestChannel } from "./guest-channels.js";
import { hostTscKhz } from "./host-tsc.js";
import { requireInitramfsInit } from "./image-init.js";
import { detectBootImage, type BootImageKind } from "./image-kind.js";
import { bootSpec } from "./boot-spec.js";
import { qemuArgs } from "./qemu-command.js";
import { QmpClient } from "./qmp.js";
import { resolveKernel } from "./resolve-kernel.js";
import { createRunDirectory } from "./run-directory.js";
import { resolveVerityRoot } from "./verity-root.js";
import { MIGRATION_CAPABILITIES, qemuVersion, SNAPSHOT_SHARES, snapshotShares, snapshotTransport } from "./snapshot-machine.js";
import { SNAPSHOT_FILES, SNAPSHOT_FORMAT, type SnapshotManifest } from "./snapshot-manifest.js";

export interface SnapshotOptions {
  /** A cpio initramfs or an ext4, erofs or squashfs image built by a3s-rootfs. */
  readonly image: string;
  /** The snapshot directory to write; an existing one is replaced only if it is a snapshot a3s-rootfs wrote. */
  readonly output: string;
  readonly kernel?: string;
  readonly modules?: string;
  readonly cpus?: number;
  readonly memoryMiB?: number;
  readonly accel?: AcceleratorChoice;
  /** The share devices: `auto` is 9p (see snapshotTransport). */
  readonly transport?: ShareTransport | "auto";
  readonly progress?: (message: string) => void;
  /** Aborting kills the VM at once; nothing is published. */
  readonly signal?: AbortSignal;
  /** How to publish: replace what is at `output` (the default), or keep it if something is already there. */
  readonly publish?: "replace" | "keep-existing";
}

export interface SnapshotResult {
  readonly path: string;
  readonly manifest: SnapshotManifest;
  /** False when `publish: "keep-existing"` found one there already (another process made it meanwhile). */
  readonly published: boolean;
  /** Host ms from QEMU's start to the guest's `ready`. */
  readonly bootMs: number;
}

/** How long a guest may take to boot to its ready point. */
const READY_TIMEOUT_MS = 300_000;

/**
 * Boots an image to the point where init waits for its job
 * (docs/guest-protocol.md §8: set up, nothing of a run in it) and saves the
 * machine there: QEMU stops the guest and writes its device and CPU state
 * to `state`, while its RAM, which lived in a shared file all along, stays
 * in `memory` (holes punched where it is zero). The directory records the
 * image, the kernel, QEMU's version and the machine options; a restore
 * refuses a snapshot that does not match. Published whole by one rename.
 */
export async function makeSnapshot(opts: SnapshotOptions): Promise<SnapshotResult> {
  const progress = opts.progress ?? (() => {});
  const qemu = requireTool("qemu-system-x86_64", "qemu-system-x86");
  const fallocate = requireTool("fallocate", "util-linux");
  const kind = await snapshotImageKind(opts.image);
  if (!(await stat(dirname(opts.output)).then((s) => s.isDirectory(), () => false))) {
    throw new A3sError("ENOENT", `cannot write the snapshot ${opts.output}: ${dirname(opts.output)} is not a directory`, { subject: opts.output });
  }
  await checkSnapshotTarget(opts.output);
  const verity = await resolveVerityRoot(opts.image, kind, undefined);
  const work = await createRunDirectory();
  const started: Started = { children: [], closers: [] };
  try {
    const kernel = await resolveKernel({ kernel: opts.kernel, modules: opts.modules, workDir: work, progress });
    const decision = await chooseAccelerator(opts.accel ?? "auto", qemu, kernel.kernelPath, cacheRoot());
    const { transport, virtiofsd } = await snapshotTransport(opts.transport, progress);
    const cpus = opts.cpus ?? 1;
    const memoryMiB = opts.memoryMiB ?? 512;
    progress(`snapshot machine: ${decision.accel}, ${cpus} CPU, ${memoryMiB} MiB, shares over ${transport}`);
    const memo = join(cacheRoot(), "digests");
    const kernelDigest = await memoizedFileSha256(kernel.kernelPath, memo);

    let result: Omit<SnapshotResult, "path" | "published"> | undefined;
    const make = async (dir: string): Promise<void> => {
      await mkdir(dir);
      const bootImage = await imageForSnapshot(opts.image, kind, dir);
      const imageDigest = await memoizedFileSha256(bootImage, kind === "cpio" ? memo : undefined);
      const media = await prepareBootMedia({ kind, image: bootImage, kernel, transport, verity: verity !== undefined, workDir: work });
      const shares = await snapshotShares({ transport, virtiofsd, dirs: {}, work, children: started.children });
      const tscKhz = decision.accel === "tcg" ? ((await hostTscKhz()) ?? null) : null;
      const boot = await bootSpec({ qemu, kernel, media, accel: decision.accel, ...(verity ? { verity } : {}) });
      const args = qemuArgs({
        ...boot.spec,
        cpus,
        memoryMiB,
        transport,
        shares,
        sockets: guestSockets(work),
        consoleLog: join(work, "console.log"),
        memoryFile: { path: join(dir, SNAPSHOT_FILES.memory), share: true, readOnly: false },
        qmpSocket: join(work, "qmp.sock"),
        start: "paused",
      });
      const saved = await bootAndSave({ qemu, args, accel: decision.accel, work, dir, image: opts.image, started, signal: opts.signal, progress });
      await finishFiles(dir, fallocate);
      const manifest: SnapshotManifest = {
        format: SNAPSHOT_FORMAT,
        createdAt: new Date().toISOString(),
        image: { path: opts.image, kind, sha256: imageDigest.sha256, bytes: imageDigest.bytes },
        kernel: { origin: kernel.origin, path: kernel.kernelPath, sha256: kernelDigest.sha256, bytes: kernelDigest.bytes },
        qemu: { version: saved.version },
        machine: { accel: decision.accel, cpus, memoryMiB, transport, shares: SNAPSHOT_SHARES, tscKhz, firmware: boot.firmware, acpi: boot.acpi },
        snapshotMs: Math.round(saved.snapshotMs),
        bytes: await snapshotBytes(dir, kind),
      };
      await writeFile(join(dir, SNAPSHOT_FILES.manifest), JSON.stringify(manifest, null, 2) + "\n", { mode: 0o444 });
      result = { manifest, bootMs: saved.bootMs };
    };

    const published = opts.publish === "keep-existing" ? await publishIfAbsent(opts.output, make) : (await writeAtomically(opts.output, make), true);
    if (!result) throw new A3sError("ESNAPSHOT", "the snapshot was not made");
    return { path: opts.output, published, ...result };
  } finally {
    const running = started.children.filter((c) => c.exitCode === null && c.signalCode === null);
    for (const c of running) c.kill("SIGKILL");
    await Promise.all(running.map((c) => new Promise((r) => c.once("exit", r))));
    started.closers.forEach((c) => c.close());
    await rm(work, { recursive: true, force: true });
  }
}

/** What a snapshot started: killed and closed when it ends, whatever happens. */
interface Started {
  readonly children: ChildProcess[];
  readonly closers: { close(): void }[];
}

/** The image's kind; a directory is refused (a snapshot needs the image's bytes), and so is an initramfs without an init. */
async function snapshotImageKind(image: string): Promise<Exclude<BootImageKind, "dir">> {
  const kind = await detectBootImage(image);
  if (kind === "dir") {
    throw new A3sError("EUSAGE", `${image} is a directory: a snapshot is made from an image file`, {
      subject: image,
      hint: "build one: a3s-rootfs build ... -o cpio:rootfs.cpio (or ext4, erofs, squashfs)",
    });
  }
  await requireInitramfsInit(kind, image);
  return kind;
}

/** The image the snapshot's machine boots: a cpio as it is; a disk image copied in, since the guest has it mounted and a restore needs those very bytes. */
async function imageForSnapshot(image: string, kind: Exclude<BootImageKind, "dir">, dir: string): Promise<string> {
  if (kind === "cpio") return image;
  const copy = join(dir, SNAPSHOT_FILES.disk);
  await copyFile(image, copy, fsConstants.COPYFILE_FICLONE);
  await chmod(copy, 0o444);
  return copy;
}

function guestSockets(work: string): { stdout: string; stderr: string; control: string; changes: string } {
  return { stdout: join(work, "out.sock"), stderr: join(work, "err.sock"), control: join(work, "ctl.sock"), changes: join(work, "chg.sock") };
}

/**
 * Starts QEMU paused, lets the guest run to its `ready` line, then stops it
 * and migrates its devices and CPU to `state` (the RAM is already in the
 * memory file). Resolves once QEMU has quit.
 */
async function bootAndSave(o: {
  qemu: string;
  args: readonly string[];
  accel: Accelerator;
  work: string;
  dir: string;
  image: string;
  started: Started;
  signal: AbortSignal | undefined;
  progress: (message: string) => void;
}): Promise<{ version: string; bootMs: number; snapshotMs: number }> {
  const events: ControlEvent[] = [];
  let onEvent: (e: ControlEvent) => void = () => {};
  const lines = new LineSplitter((l) => {
    const ev = parseControlLine(l);
    if (!ev) return;
    events.push(ev);
    onEvent(ev);
  });
  const sockets = guestSockets(o.work);
  // The template's machine has the change-set port too: a restore's overlay run sends its changes there.
  o.started.closers.push(await GuestChannel.listen(sockets.changes, () => {}));
  o.started.closers.push(await GuestChannel.listen(sockets.stdout, () => {}));
  o.started.closers.push(await GuestChannel.listen(sockets.stderr, () => {}));
  o.started.closers.push(await GuestChannel.listen(sockets.control, (b) => lines.push(b)));
  const qmp = await QmpClient.listen(join(o.work, "qmp.sock"));
  o.started.closers.push(qmp);

  const t0 = performance.now();
  // The VM dies with this process even when it is SIGKILLed; under TCG it runs without huge pages (qemu-launch.ts).
  const vmCommand = qemuLaunch(o.qemu, o.args, { accel: o.accel });
  const vm = spawn(vmCommand.file, vmCommand.args, { stdio: ["ignore", "ignore", "pipe"] });
  o.started.children.push(vm);
  let qemuStderr = "";
  vm.stderr?.on("data", (b: Buffer) => (qemuStderr = (qemuStderr + b.toString()).slice(-8192)));
  const exited = new Promise<string>((resolve) => vm.on("exit", (code, sig) => resolve(sig ? `killed by ${sig}` : `exit status ${code}`)));
  const failure = async (what: string): Promise<A3sError> => {
    const consoleText = await readFile(join(o.work, "console.log"), "utf8").catch(() => "");
    const err = [...events, ...controlLinesInConsole(consoleText)].find((e) => e.kind === "error");
    const tail = consoleText.replace(/\r/g, "").split("\n").slice(-15).join("\n");
    return new A3sError(
      "ESNAPSHOT",
      `${what}${err?.kind === "error" ? `: init failed (status ${err.status}): ${err.message}` : ""}${qemuStderr.trim() ? `\nQEMU: ${qemuStderr.trim()}` : ""}${err ? "" : `\nlast console lines:\n${tail}`}`,
      { subject: o.image },
    );
  };
  const readyOrNot = new Promise<"ready" | "error">((resolve) => {
    onEvent = (e) => {
      if (e.kind === "ready" || e.kind === "error") resolve(e.kind);
    };
  });
  const aborted = new Promise<"aborted">((resolve) => {
    if (o.signal?.aborted) resolve("aborted");
    o.signal?.addEventListener("abort", () => resolve("aborted"), { once: true });
  });
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), READY_TIMEOUT_MS)));
  try {
    const up = await Promise.race([qmp.ready().then(() => "up" as const), exited, aborted]);
    if (up === "aborted") throw new A3sError("EABORTED", "the snapshot was interrupted; the VM was stopped");
    if (up !== "up") throw await failure(`QEMU exited before it started the machine (${up})`);
    const version = await qemuVersion(qmp);
    await qmp.execute("migrate-set-capabilities", { capabilities: MIGRATION_CAPABILITIES });
    await qmp.execute("cont");
    const outcome = await Promise.race([readyOrNot, exited, aborted, timedOut]);
    if (outcome === "aborted") throw new A3sError("EABORTED", "the snapshot was interrupted; the VM was stopped");
    if (outcome === "timeout") throw await failure(`the guest did not reach its ready point in ${READY_TIMEOUT_MS / 1000} s`);
    if (outcome !== "ready") throw await failure(`the guest stopped before its ready point${outcome === "error" ? "" : ` (QEMU ${outcome})`}`);
    const bootMs = performance.now() - t0;
    o.progress(`guest ready after ${Math.round(bootMs)} ms; saving the machine`);
    const s0 = performance.now();
    await saveMachine(qmp, join(o.dir, SNAPSHOT_FILES.state), failure);
    const snapshotMs = performance.now() - s0;
    await qmp.execute("quit").catch(() => {});
    await exited;
    return { version, bootMs, snapshotMs };
  } finally {
    clearTimeout(timer);
  }
}

/** Stops the guest and migrates its devices and CPU to `statePath`; a migration that does not complete is an error saying why. */
async function saveMachine(qmp: QmpClient, statePath: string, failure: (what: string) => Promise<A3sError>): Promise<void> {
  await qmp.execute("stop");
  // Listen before asking: the event can arrive with the command's answer.
  const migrated = qmp.waitForEvent("MIGRATION", (e) => ["completed", "failed", "cancelled"].includes(String(e.data?.status)));
  await qmp.execute("migrate", { uri: `file:${statePath}` });
  const status = String((await migrated).data?.status);
  if (status !== "completed") {
    const info = await qmp.execute<{ "error-desc"?: string }>("query-migrate").catch(() => ({}) as { "error-desc"?: string });
    throw await failure(`QEMU could not save the machine (${status}${info["error-desc"] ? `: ${info["error-desc"]}` : ""})`);
  }
}

/** Zero pages the guest wrote (freed memory the kernel cleared) become holes; the files become read-only. */
async function finishFiles(dir: string, fallocate: string): Promise<void> {
  const memory = join(dir, SNAPSHOT_FILES.memory);
  await runTool(fallocate, ["--dig-holes", memory]);
  for (const f of [memory, join(dir, SNAPSHOT_FILES.state)]) await chmod(f, 0o444);
}

async function snapshotBytes(dir: string, kind: Exclude<BootImageKind, "dir">): Promise<SnapshotManifest["bytes"]> {
  const allocated = async (f: string): Promise<number> => ((await stat(f).catch(() => undefined))?.blocks ?? 0) * 512;
  return {
    state: await allocated(join(dir, SNAPSHOT_FILES.state)),
    memory: await allocated(join(dir, SNAPSHOT_FILES.memory)),
    disk: kind === "cpio" ? 0 : await allocated(join(dir, SNAPSHOT_FILES.disk)),
  };
}

/**
 * A snapshot replaces only a snapshot: a path that holds anything else (a
 * project, a file, a directory a3s-rootfs did not write) is refused, never
 * deleted.
 */
async function checkSnapshotTarget(path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return;
  const manifest = st.isDirectory() ? await readFile(join(path, SNAPSHOT_FILES.manifest), "utf8").catch(() => undefined) : undefined;
  let format: unknown;
  try {
    format = manifest === undefined ? undefined : (JSON.parse(manifest) as { format?: unknown }).format;
  } catch {
    format = undefined;
  }
  if (format !== SNAPSHOT_FORMAT) {
    throw new A3sError("EEXIST", `${path} exists and is not a snapshot a3s-rootfs wrote: refusing to replace it`, {
      subject: path,
      hint: "choose another -o path, or remove it yourself",
    });
  }
}

/**
 * Makes a directory under a temporary name beside `path` and renames it
 * into place only if nothing is there yet: a template two runs made at once
 * is kept as the first one published, and a restore that already opened it
 * never sees it replaced. Returns false when another was there.
 */
async function publishIfAbsent(path: string, make: (dir: string) => Promise<void>): Promise<boolean> {
  const tmp = temporaryPathFor(path);
  try {
    await make(tmp);
    try {
      await rename(tmp, path);
      return true;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOTEMPTY" || code === "EEXIST") return false;
      throw e;
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
