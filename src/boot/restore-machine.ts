import type { ChildProcess } from "node:child_process";
import { access, constants as fsConstants, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { A3sError } from "../errors.js";
import { requireTool, runTool } from "../util/host-tool.js";
import { qbootFirmware } from "./microvm-machine.js";
import type { QmpClient } from "./qmp.js";
import type { VmSpec } from "./qemu-command.js";
import { MIGRATION_CAPABILITIES, qemuVersion, snapshotShares, snapshotTransport } from "./snapshot-machine.js";
import { checkQemuVersion, SNAPSHOT_FILES, type OpenSnapshot } from "./snapshot-manifest.js";

/** A restore's machine, less what each run adds (its channels, console log and QMP socket). */
export interface RestorePlan {
  readonly spec: Omit<VmSpec, "sockets" | "consoleLog" | "qmpSocket">;
  /** The tags of the shares this run provides: the job's `shares=`. */
  readonly providedShares: string[];
  /** Done once QEMU has mapped the guest's memory: removes a copy made for virtio-fs. */
  readonly mapped: () => Promise<void>;
}

/**
 * The machine of a snapshot, for one run: the same devices (its share
 * devices get the run's directories, or empty ones), its disk image, and
 * its memory: over 9p the snapshot's memory file itself, mapped privately
 * (copy-on-write: restores share every page they do not write); over
 * virtio-fs a copy, because virtiofsd needs the guest's memory shared
 * with it, which a private mapping is not.
 */
export async function prepareRestore(
  snapshot: OpenSnapshot,
  opts: { qemu: string; workspace?: string | undefined; skills?: string | undefined; work: string; children: ChildProcess[] },
): Promise<RestorePlan> {
  const m = snapshot.manifest;
  const firmware = restoreFirmware(snapshot, opts.qemu);
  const { transport, virtiofsd } = await snapshotTransport(m.machine.transport);
  const shares = await snapshotShares({ transport, virtiofsd, dirs: { workspace: opts.workspace, skills: opts.skills }, work: opts.work, children: opts.children });
  let memory = { path: snapshot.file(SNAPSHOT_FILES.memory), share: false, readOnly: true };
  let copyDir: string | undefined;
  if (transport === "virtiofs") {
    // A shared copy, on tmpfs where there is one: it is the guest's RAM.
    const shm = await access("/dev/shm", fsConstants.W_OK).then(() => "/dev/shm", () => opts.work);
    copyDir = await mkdtemp(join(shm, "a3s-memory-"));
    const copy = join(copyDir, SNAPSHOT_FILES.memory);
    await runTool(requireTool("cp", "coreutils"), ["--sparse=always", memory.path, copy]);
    memory = { path: copy, share: true, readOnly: false };
  }
  const spec: RestorePlan["spec"] = {
    kernelPath: "",
    initrd: "",
    cmdline: "",
    ...(m.image.kind !== "cpio" ? { disk: snapshot.file(SNAPSHOT_FILES.disk) } : {}),
    accel: m.machine.accel,
    cpus: m.machine.cpus,
    memoryMiB: m.machine.memoryMiB,
    transport,
    shares,
    memoryFile: memory,
    start: "incoming",
    ...(firmware !== undefined ? { firmware } : {}),
    ...(m.machine.acpi === false ? { noAcpi: true } : {}),
  };
  const provided = [opts.workspace !== undefined ? "workspace" : undefined, opts.skills !== undefined ? "skills" : undefined];
  return {
    spec,
    providedShares: provided.filter((t): t is string => t !== undefined),
    mapped: async () => {
      if (copyDir) await rm(copyDir, { recursive: true, force: true });
    },
  };
}

/**
 * The `-bios` file of a restore: the firmware the snapshot's machine
 * started with (its ROM is part of the state QEMU reads back; another one
 * makes the restore fail), or QEMU's default for a snapshot that names
 * none (made before the firmware was recorded, or on a QEMU without qboot).
 */
function restoreFirmware(snapshot: OpenSnapshot, qemu: string): string | undefined {
  if (snapshot.manifest.machine.firmware !== "qboot") return undefined;
  const qboot = qbootFirmware(qemu);
  if (qboot === undefined) {
    throw new A3sError("ESNAPSHOT", `the snapshot ${snapshot.path} was made with the qboot firmware, which ${qemu} does not have (share/qemu/qboot.rom)`, {
      subject: snapshot.path,
      hint: "make the snapshot again with this QEMU: a3s-rootfs snapshot IMAGE -o DIR",
    });
  }
  return qboot;
}

/**
 * Restores the machine into a QEMU started with `-incoming defer`: checks
 * that QEMU's version is the snapshot's, reads the state (the RAM is the
 * memory file QEMU mapped at start), and resumes the guest, whose init is
 * waiting for its job.
 */
export async function resumeRestored(qmp: QmpClient, snapshot: OpenSnapshot, signal?: AbortSignal): Promise<void> {
  await qmp.ready(signal);
  checkQemuVersion(snapshot, await qemuVersion(qmp));
  await qmp.execute("migrate-set-capabilities", { capabilities: MIGRATION_CAPABILITIES });
  // Listen before asking: the event can arrive with the command's answer.
  const done = qmp.waitForEvent("MIGRATION", (e) => ["completed", "failed", "cancelled"].includes(String(e.data?.status)), signal);
  await qmp.execute("migrate-incoming", { uri: `file:${snapshot.file(SNAPSHOT_FILES.state)}` });
  const status = String((await done).data?.status);
  if (status !== "completed") {
    const info = await qmp.execute<{ "error-desc"?: string }>("query-migrate").catch(() => ({}) as { "error-desc"?: string });
    throw new A3sError("ESNAPSHOT", `QEMU could not restore the snapshot ${snapshot.path} (${status}${info["error-desc"] ? `: ${info["error-desc"]}` : ""})`, {
      subject: snapshot.path,
      hint: "make the snapshot again: a3s-rootfs snapshot IMAGE -o DIR",
    });
  }
  await qmp.execute("cont");
}
