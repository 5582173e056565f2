import type { ChildProcess } from "node:child_process";
import { realpath } from "node:fs/promises";
import { join } from "node:path";
import { A3sError } from "../errors.js";
import { cacheRoot } from "../util/cache-dir.js";
import type { ShareTransport } from "./boot-media.js";
import type { VmShare } from "./qemu-command.js";
import { DEFAULT_VIRTIOFS_SETTINGS, resolveVirtiofsd, startVirtiofsds, type Virtiofsd, type VirtiofsSettings } from "./virtiofsd.js";

export interface ShareRequest {
  /** Host directory shared read-write as /workspace. */
  readonly workspace?: string | undefined;
  /** Host directory shared read-only as /skills. */
  readonly skills?: string | undefined;
  readonly transport?: ShareTransport | "auto" | undefined;
  readonly virtiofs?: Partial<VirtiofsSettings> | undefined;
}

/**
 * The transport and one share per directory: virtio-fs with one virtiofsd
 * per share (started here, pushed onto `children` so the run stops them),
 * or 9p where no virtiofsd can be had and the caller allows it. Resolves
 * once every virtiofsd has made its socket.
 */
export async function startShares(
  req: ShareRequest,
  work: string,
  children: ChildProcess[],
  progress: (m: string) => void,
): Promise<{ transport: ShareTransport; shares: VmShare[] }> {
  const wanted = req.transport ?? "auto";
  const virtiofsd = wanted === "9p" || (!req.workspace && !req.skills) ? undefined : await shareServer(wanted, progress);
  const transport: ShareTransport = virtiofsd ? "virtiofs" : wanted === "virtiofs" ? "virtiofs" : "9p";
  const settings = { ...DEFAULT_VIRTIOFS_SETTINGS, ...req.virtiofs };
  const shares: (VmShare & { socket: string })[] = [];
  for (const [tag, dir, readOnly] of [["workspace", req.workspace, false], ["skills", req.skills, true]] as const) {
    if (dir === undefined) continue;
    shares.push({ tag, hostPath: await realpath(dir), readOnly, socket: join(work, `${tag}.vfs.sock`) });
  }
  if (virtiofsd) await startVirtiofsds(virtiofsd, shares, children, settings);
  progress(
    `shares: ${shares.length ? shares.map((s) => `${s.tag} (${s.readOnly ? "ro" : "rw"})`).join(", ") : "none"} over ${transport}` +
      (virtiofsd && shares.length ? ` (${virtiofsd.version}, ${virtiofsd.origin === "host" ? "the host's" : "provisioned"}; cache=${settings.cache})` : ""),
  );
  return { transport, shares };
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
