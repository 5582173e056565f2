import { closeSync, openSync, constants as fsConstants } from "node:fs";
import { readFile } from "node:fs/promises";
import { A3sError } from "../errors.js";
import type { Accelerator } from "./accelerator.js";
import type { ShareTransport } from "./boot-media.js";
import type { BootImageKind } from "./image-kind.js";
import type { MicrovmFirmware } from "./microvm-machine.js";

/**
 * A snapshot is a directory (docs/boot.md, "Snapshots"):
 *
 *   snapshot.json  this manifest: what the machine is, and what it needs
 *   state          QEMU's migration stream: devices and CPU, no guest RAM
 *   memory         the guest's RAM, a sparse file (holes are zero pages),
 *                  read-only: every restore maps it privately
 *   disk.img       disk images only: the root image the guest has mounted
 *
 * It is published whole by one rename, and never written after.
 */
export const SNAPSHOT_FILES = { manifest: "snapshot.json", state: "state", memory: "memory", disk: "disk.img" } as const;

/** The layout of the directory and of this manifest. */
export const SNAPSHOT_FORMAT = 2;

export interface SnapshotManifest {
  readonly format: typeof SNAPSHOT_FORMAT;
  readonly createdAt: string;
  /** The image the machine booted: the user's path when it was made, its kind and sha256. */
  readonly image: { readonly path: string; readonly kind: Exclude<BootImageKind, "dir">; readonly sha256: string; readonly bytes: number };
  /** The kernel it booted: its origin (`a3s-microvm:…`, `debian:…`, or the file given) and the sha256 of the file. */
  readonly kernel: { readonly origin: string; readonly path: string; readonly sha256: string; readonly bytes: number };
  /** QEMU's own version (query-version): the migration stream is read only by the same version. */
  readonly qemu: { readonly version: string };
  /** Everything that makes the devices and CPU state: a restore starts the same machine. */
  readonly machine: MachineOptions;
  /** How long the save took, and how big its parts are (memory: allocated bytes, not the apparent size). */
  readonly snapshotMs: number;
  readonly bytes: { readonly state: number; readonly memory: number; readonly disk: number };
}

export interface MachineOptions {
  readonly accel: Accelerator;
  readonly cpus: number;
  readonly memoryMiB: number;
  /** The share devices, for every share tag a run may provide; unused ones get an empty directory. */
  readonly transport: ShareTransport;
  readonly shares: readonly { readonly tag: string; readonly readOnly: boolean }[];
  /**
   * TCG: the host TSC rate the guest was told (tsc_early_khz): the guest's
   * clock runs on it, so a restore on a host with another rate would keep
   * the wrong time. null under KVM or when it could not be read.
   */
  readonly tscKhz: number | null;
  /**
   * The firmware the machine started through: its ROM is in the machine
   * state, so a restore starts QEMU with the same one (qbootFirmware).
   * Absent in snapshots made before it was recorded: QEMU's default.
   */
  readonly firmware?: MicrovmFirmware;
  /**
   * Whether the machine had ACPI (bootsWithoutAcpi, machine-acpi.ts): a
   * restore starts the same machine. Absent in snapshots made before it
   * was recorded, which all had it.
   */
  readonly acpi?: boolean;
}

/**
 * One snapshot directory, held open: its files are read through the
 * directory's descriptor (/proc/self/fd/N/FILE), so a snapshot replaced
 * while it is being restored cannot mix the state of one with the memory
 * of the other.
 */
export class OpenSnapshot {
  private constructor(
    /** The path as the user gave it, for messages. */
    readonly path: string,
    private readonly dirFd: number,
    readonly manifest: SnapshotManifest,
  ) {}

  static async open(path: string): Promise<OpenSnapshot> {
    let fd: number;
    try {
      fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new A3sError(code === "ENOENT" ? "ENOENT" : "ESNAPSHOT", `the snapshot ${path} ${code === "ENOENT" ? "does not exist" : code === "ENOTDIR" ? "is not a snapshot directory" : `cannot be opened (${code})`}`, {
        subject: path,
        hint: "make one with a3s-rootfs snapshot IMAGE -o DIR",
      });
    }
    try {
      const text = await readFile(`/proc/self/fd/${fd}/${SNAPSHOT_FILES.manifest}`, "utf8").catch(() => undefined);
      if (text === undefined) {
        throw new A3sError("ESNAPSHOT", `${path} is not a snapshot: it has no ${SNAPSHOT_FILES.manifest}`, { subject: path, hint: "make one with a3s-rootfs snapshot IMAGE -o DIR" });
      }
      return new OpenSnapshot(path, fd, parseManifest(text, path));
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** A path to one of its files that stays bound to this directory, for this process and its children (QEMU). */
  file(name: (typeof SNAPSHOT_FILES)[keyof typeof SNAPSHOT_FILES]): string {
    return `/proc/${process.pid}/fd/${this.dirFd}/${name}`;
  }

  close(): void {
    closeSync(this.dirFd);
  }
}

/** The manifest, checked field by field: a snapshot from elsewhere is input like any other. */
export function parseManifest(text: string, path: string): SnapshotManifest {
  const bad = (what: string): A3sError =>
    new A3sError("ESNAPSHOT", `${path}/${SNAPSHOT_FILES.manifest}: ${what}`, { subject: path, hint: "make the snapshot again with a3s-rootfs snapshot" });
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch {
    throw bad("not JSON");
  }
  const o = m as Record<string, unknown>;
  if (typeof o !== "object" || o === null) throw bad("not a JSON object");
  if (o.format !== SNAPSHOT_FORMAT) throw bad(`format ${JSON.stringify(o.format)}, this a3s-rootfs reads format ${SNAPSHOT_FORMAT}`);
  const image = o.image as Record<string, unknown> | undefined;
  const kernel = o.kernel as Record<string, unknown> | undefined;
  const qemu = o.qemu as Record<string, unknown> | undefined;
  const machine = o.machine as Record<string, unknown> | undefined;
  const isSha = (v: unknown): boolean => typeof v === "string" && /^[0-9a-f]{64}$/.test(v);
  if (!image || !isSha(image.sha256) || !["cpio", "ext4", "erofs", "squashfs"].includes(String(image.kind))) throw bad("no valid image (kind, sha256)");
  if (!kernel || !isSha(kernel.sha256) || typeof kernel.origin !== "string") throw bad("no valid kernel (origin, sha256)");
  if (!qemu || typeof qemu.version !== "string") throw bad("no QEMU version");
  if (
    !machine ||
    !["kvm", "tcg"].includes(String(machine.accel)) ||
    !Number.isInteger(machine.cpus) ||
    !Number.isInteger(machine.memoryMiB) ||
    !["9p", "virtiofs"].includes(String(machine.transport)) ||
    !Array.isArray(machine.shares) ||
    !(machine.tscKhz === null || Number.isInteger(machine.tscKhz)) ||
    !(machine.firmware === undefined || machine.firmware === "qboot" || machine.firmware === "default") ||
    !(machine.acpi === undefined || typeof machine.acpi === "boolean")
  ) {
    throw bad("no valid machine options");
  }
  for (const s of machine.shares as unknown[]) {
    const share = s as Record<string, unknown>;
    if (typeof share?.tag !== "string" || !/^[A-Za-z0-9_.-]{1,36}$/.test(share.tag) || typeof share.readOnly !== "boolean") throw bad("a share without a valid tag");
  }
  return m as SnapshotManifest;
}

/** What a run asks of a snapshot; each given field must match the manifest. */
export interface SnapshotExpectations {
  readonly imageSha256?: string;
  readonly imagePath?: string;
  readonly kernel?: { readonly origin: string; readonly sha256: string; readonly path: string };
  readonly accel?: Accelerator;
  readonly cpus?: number;
  readonly memoryMiB?: number;
  readonly transport?: ShareTransport;
  readonly tscKhz?: number | null;
}

/**
 * Refuses a snapshot that is not the machine the run asks for, saying
 * what differs: another image, another kernel, other machine options, or
 * a host whose clock rate differs from the one the guest was told.
 */
export function checkSnapshotMatches(snapshot: { path: string; manifest: SnapshotManifest }, want: SnapshotExpectations): void {
  const m = snapshot.manifest;
  const refuse = (what: string, hint: string): never => {
    throw new A3sError("ESNAPSHOT", `the snapshot ${snapshot.path} does not match this run: ${what}`, { subject: snapshot.path, hint });
  };
  const remake = "make a snapshot for it: a3s-rootfs snapshot IMAGE -o DIR (with the same --kernel, --memory, --cpus)";
  if (want.imageSha256 !== undefined && want.imageSha256 !== m.image.sha256) {
    refuse(`it was made from another image (${m.image.path}, sha256 ${m.image.sha256.slice(0, 12)}…), not ${want.imagePath ?? "this one"} (sha256 ${want.imageSha256.slice(0, 12)}…)`, remake);
  }
  if (want.kernel && want.kernel.sha256 !== m.kernel.sha256) {
    refuse(`it was made with another kernel (${m.kernel.origin}, sha256 ${m.kernel.sha256.slice(0, 12)}…), not ${want.kernel.origin} (sha256 ${want.kernel.sha256.slice(0, 12)}…)`, remake);
  }
  for (const key of ["accel", "cpus", "memoryMiB", "transport"] as const) {
    const wanted = want[key];
    if (wanted !== undefined && wanted !== m.machine[key]) {
      const name = { accel: "--accel", cpus: "--cpus", memoryMiB: "--memory", transport: "--transport" }[key];
      refuse(`it was made with ${name} ${m.machine[key]}, not ${wanted}`, `leave ${name} out to use the snapshot's, or ${remake}`);
    }
  }
  if (want.tscKhz !== undefined && m.machine.accel === "tcg" && m.machine.tscKhz !== want.tscKhz) {
    refuse(`its guest runs on a TSC of ${m.machine.tscKhz ?? "unknown"} kHz, this host's is ${want.tscKhz ?? "unknown"} kHz: its clock would be wrong`, "make the snapshot on this host");
  }
}

/** Refuses a snapshot made by another QEMU version, whose migration stream this one may misread. */
export function checkQemuVersion(snapshot: { path: string; manifest: SnapshotManifest }, running: string): void {
  if (running !== snapshot.manifest.qemu.version) {
    throw new A3sError("ESNAPSHOT", `the snapshot ${snapshot.path} was made by QEMU ${snapshot.manifest.qemu.version}, this is QEMU ${running}`, {
      subject: snapshot.path,
      hint: "QEMU reads only its own version's machine state: make the snapshot again (a3s-rootfs snapshot, or run --warm, which does it by itself)",
    });
  }
}
