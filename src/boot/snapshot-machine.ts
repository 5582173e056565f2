import type { ChildProcess } from "node:child_process";
import { mkdir, realpath } from "node:fs/promises";
import { join } from "node:path";
import { A3sError } from "../errors.js";
import type { ShareTransport } from "./boot-media.js";
import type { QmpClient } from "./qmp.js";
import type { VmShare } from "./qemu-command.js";
import { cacheRoot } from "../util/cache-dir.js";
import { DEFAULT_VIRTIOFS_SETTINGS, resolveVirtiofsd, startVirtiofsds, type Virtiofsd } from "./virtiofsd.js";

/**
 * What a snapshot's machine and its restores have in common: the share
 * devices, the migration settings, and how QEMU names its version.
 */

/**
 * Every share a run may provide. A restored machine has exactly its
 * template's devices (microvm has no hot-plug), so a template has a device
 * for each, and a run that does not provide one gives it an empty
 * directory; the job's `shares=` tells init which to mount.
 */
export const SNAPSHOT_SHARES: readonly { readonly tag: string; readonly readOnly: boolean }[] = [
  { tag: "workspace", readOnly: false },
  { tag: "skills", readOnly: true },
];

/**
 * `events`: QEMU reports the migration's progress as MIGRATION events.
 * `x-ignore-shared`: RAM that is shared and backed by a named file is not
 * written to the stream: it stays in the memory file, which a restore maps
 * instead of reading (QEMU checks the block's address on both sides).
 */
export const MIGRATION_CAPABILITIES = [
  { capability: "events", state: true },
  { capability: "x-ignore-shared", state: true },
] as const;

/** QEMU's version as `query-version` gives it: "10.0.2 (Debian 1:10.0.2+ds-2)". */
export async function qemuVersion(qmp: QmpClient): Promise<string> {
  const v = await qmp.execute<{ qemu: { major: number; minor: number; micro: number }; package?: string }>("query-version");
  const pkg = v.package?.trim();
  return `${v.qemu.major}.${v.qemu.minor}.${v.qemu.micro}${pkg ? ` (${pkg})` : ""}`;
}

/**
 * The transport of a snapshot's shares. `auto` is 9p: a restore over 9p
 * maps the template's memory privately and shares every page it does not
 * write with the other restores; virtio-fs (vhost-user) needs the guest's
 * memory shared with virtiofsd, which a private mapping is not, so each
 * restore copies the memory (docs/boot.md, "Snapshots").
 */
export async function snapshotTransport(
  wanted: ShareTransport | "auto" | undefined,
  progress: (m: string) => void = () => {},
): Promise<{ transport: ShareTransport; virtiofsd?: Virtiofsd }> {
  if (wanted !== "virtiofs") return { transport: "9p" };
  const virtiofsd = await resolveVirtiofsd({ cache: cacheRoot(), provision: true, progress });
  if (!virtiofsd) throw new A3sError("ETOOL", "no virtiofsd could be found or provisioned", { hint: "run: a3s-rootfs virtiofsd --fetch, or use --transport 9p" });
  return { transport: "virtiofs", virtiofsd };
}

/**
 * The share devices of a snapshot's machine: each tag gets the run's
 * directory, or else an empty one made in `work`; over virtio-fs a
 * virtiofsd is started for each (pushed to `children`).
 */
export async function snapshotShares(opts: {
  transport: ShareTransport;
  virtiofsd?: Virtiofsd | undefined;
  dirs: Readonly<Record<string, string | undefined>>;
  work: string;
  children: ChildProcess[];
}): Promise<VmShare[]> {
  const shares: (VmShare & { socket: string })[] = [];
  for (const { tag, readOnly } of SNAPSHOT_SHARES) {
    const given = opts.dirs[tag];
    const dir = given !== undefined ? await realpath(given) : join(opts.work, `empty-${tag}`);
    if (given === undefined) await mkdir(dir, { mode: 0o555 });
    shares.push({ tag, hostPath: dir, readOnly, socket: join(opts.work, `${tag}.vfs.sock`) });
  }
  if (opts.transport === "virtiofs") {
    if (!opts.virtiofsd) throw new A3sError("ETOOL", "virtiofsd is not installed", { hint: "apt-get install virtiofsd (Debian 13)" });
    await startVirtiofsds(opts.virtiofsd, shares, opts.children, DEFAULT_VIRTIOFS_SETTINGS);
  }
  return shares;
}
