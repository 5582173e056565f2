import { spawn, type ChildProcess } from "node:child_process";
import { access } from "node:fs/promises";
import { A3sError } from "../errors.js";
import { findExecutable, runTool } from "../util/host-tool.js";
import { dieWithParent } from "./die-with-parent.js";
import { bundleCommand, listBundles, verifyBundle } from "./virtiofsd-bundle.js";
import { provisionVirtiofsd } from "./virtiofsd-provision.js";

/** Where Debian installs virtiofsd (package virtiofsd, Debian 13 and later); PATH is searched too. */
const VIRTIOFSD_PATHS = ["/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd"];

/** A virtiofsd this host can run: the host's own, or one provisioned into the cache. */
export interface Virtiofsd {
  readonly origin: "host" | "cache";
  /** The program (host) or the bundle directory (cache). */
  readonly path: string;
  /** `virtiofsd --version`, e.g. "virtiofsd 1.13.2". */
  readonly version: string;
  /** What to execute: the program itself, or the bundle's loader followed by `prefix`. */
  readonly file: string;
  readonly prefix: readonly string[];
}

/**
 * How virtiofsd serves a share (docs/boot.md, "Shares", has what each
 * setting means for a workspace the host edits too):
 * - cache: "never": every access goes to the host; "auto": the guest keeps
 *   attributes and names for 1 s and file data until the file is opened
 *   again after it changed (close-to-open); "always": the guest keeps all of
 *   it, and changes on the host may stay unseen; "metadata": like "always"
 *   for attributes, but no data cache.
 * - writeback: the guest's page cache holds writes and sends them later
 *   (at the latest when the file is closed).
 * - threadPoolSize: 0 handles requests on the queue's thread; N > 0 hands
 *   them to up to N worker threads.
 * - sandbox: "namespace" (see startVirtiofsds) or "none", which only the
 *   benchmarks use, to measure what the sandbox costs.
 */
export interface VirtiofsSettings {
  readonly cache: "never" | "auto" | "always" | "metadata";
  readonly writeback: boolean;
  readonly threadPoolSize: number;
  readonly sandbox: "namespace" | "none";
}

/** The default: see bench/results/workspace-io.md for the numbers behind it. */
export const DEFAULT_VIRTIOFS_SETTINGS: VirtiofsSettings = { cache: "auto", writeback: false, threadPoolSize: 0, sandbox: "namespace" };

/** The host's virtiofsd, if it has one that runs (a binary copied from a newer release may not). */
export async function findHostVirtiofsd(progress: (m: string) => void = () => {}): Promise<Virtiofsd | undefined> {
  const candidates = [...VIRTIOFSD_PATHS, findExecutable("virtiofsd")].filter((p): p is string => p !== undefined);
  for (const p of candidates) {
    if (!(await access(p).then(() => true, () => false))) continue;
    const version = await runTool(p, ["--version"]).then(
      (r) => r.stdout.trim(),
      (e: Error) => {
        progress(`virtiofsd: ${p} does not run (${e.message.split("\n")[0]}); not using it`);
        return undefined;
      },
    );
    if (version) return { origin: "host", path: p, version, file: p, prefix: [] };
  }
  return undefined;
}

/**
 * The newest virtiofsd provisioned into the cache, its files verified
 * against their recorded hashes first; a damaged one is an error naming the
 * file, never run and never silently skipped.
 */
export async function cachedVirtiofsd(cache: string): Promise<Virtiofsd | undefined> {
  const newest = (await listBundles(cache))[0];
  if (!newest) return undefined;
  await verifyBundle(newest.dir, newest.manifest);
  const cmd = bundleCommand(newest.dir, newest.manifest);
  return { origin: "cache", path: newest.dir, version: newest.manifest.version, file: cmd.file, prefix: cmd.prefix };
}

/**
 * The virtiofsd a run uses: the host's where it is packaged, else the cached
 * one, else (with `provision`) one fetched now from Debian 13 into the cache.
 * Undefined when there is none and provisioning is off.
 */
export async function resolveVirtiofsd(opts: {
  cache: string;
  provision: boolean;
  progress?: (m: string) => void;
}): Promise<Virtiofsd | undefined> {
  const progress = opts.progress ?? (() => {});
  const host = await findHostVirtiofsd(progress);
  if (host) return host;
  const cached = await cachedVirtiofsd(opts.cache);
  if (cached || !opts.provision) return cached;
  progress("virtiofsd: the host has none (Debian 12 does not package it); provisioning it from Debian 13 into the cache, once");
  await provisionVirtiofsd(opts.cache, progress);
  return cachedVirtiofsd(opts.cache);
}

/** How long virtiofsd may take to make its socket. */
const SOCKET_WAIT_MS = 5000;

/** How much of virtiofsd's stderr is kept for an error message. */
const KEEP_STDERR = 8192;

/** One share for its virtiofsd: the host directory, the socket to make, and whether the guest may write. */
export interface VirtiofsdShare {
  readonly hostPath: string;
  readonly socket: string;
  readonly readOnly: boolean;
}

/**
 * Starts one virtiofsd per share, all at once, and pushes each process onto
 * `children` as it is spawned (the caller stops them, whatever happens).
 * Resolves once every socket exists; rejects, once all have settled, with
 * the first that failed. virtiofsd makes its socket 13-16 ms after the
 * spawn; two started together have both made theirs after about 40 ms.
 *
 * - A read-only share is exported read-only by virtiofsd itself, so the
 *   guest cannot write to the host through it whatever it mounts.
 * - The sandbox is virtiofsd's namespace sandbox: it serves the share from
 *   inside new mount, PID and network namespaces whose root is the shared
 *   directory, with its capabilities reduced, so a guest that finds a bug in
 *   virtiofsd still cannot reach the rest of the host's file system. It
 *   works as root and, through a user namespace, unprivileged.
 * - It dies with this process, even a SIGKILLed one (die-with-parent.ts);
 *   its own sandboxed child has the same tie to it.
 */
export async function startVirtiofsds(
  v: Virtiofsd,
  shares: readonly VirtiofsdShare[],
  children: ChildProcess[],
  settings: VirtiofsSettings = DEFAULT_VIRTIOFS_SETTINGS,
): Promise<void> {
  const readies = shares.map((share) => {
    const child = spawnVirtiofsd(v, share, settings);
    children.push(child.process);
    return child.ready;
  });
  const settled = await Promise.allSettled(readies);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
}

/** One virtiofsd, spawned: the process, and a promise of its socket (rejected, the process killed, when it does not come). */
function spawnVirtiofsd(v: Virtiofsd, share: VirtiofsdShare, settings: VirtiofsSettings): { process: ChildProcess; ready: Promise<void> } {
  const args = [
    ...v.prefix,
    `--socket-path=${share.socket}`,
    `--shared-dir=${share.hostPath}`,
    `--cache=${settings.cache}`,
    `--thread-pool-size=${settings.threadPoolSize}`,
    `--sandbox=${settings.sandbox}`,
    "--log-level=error",
  ];
  if (settings.writeback) args.push("--writeback");
  if (share.readOnly) args.push("--readonly");
  const run = dieWithParent(v.file, args);
  // The loader of a provisioned virtiofsd must not be handed the host's
  // preloads: they are built against the host's older libc.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("LD_")));
  const child = spawn(run.file, run.args, { stdio: ["ignore", "ignore", "pipe"], env });
  let stderr = "";
  child.stderr?.on("data", (b: Buffer) => (stderr = (stderr + b.toString()).slice(-KEEP_STDERR)));
  const spawnError = new Promise<Error>((resolve) => child.once("error", resolve));
  const ready = async (): Promise<void> => {
    // QEMU waits for the socket: looked for every 2 ms (every 25 ms cost a
    // run 10-25 ms a share).
    for (const started = performance.now(); performance.now() - started < SOCKET_WAIT_MS; ) {
      if (child.exitCode !== null || child.signalCode !== null) break;
      if (await access(share.socket).then(() => true, () => false)) return;
      const failed = await Promise.race([spawnError, new Promise<undefined>((r) => setTimeout(r, 2))]);
      if (failed) {
        throw new A3sError("EVIRTIOFSD", `cannot start virtiofsd (${v.file}) for ${share.hostPath}: ${failed.message}`, { subject: share.hostPath });
      }
    }
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    // Its last words may still be in the pipe.
    await Promise.race([new Promise((r) => child.once("close", r)), new Promise((r) => setTimeout(r, 1000))]);
    throw new A3sError(
      "EVIRTIOFSD",
      `virtiofsd (${v.origin === "host" ? v.file : `cached in ${v.path}`}) did not start for ${share.hostPath}: ${stderr.trim() || "no socket after 5 s"}`,
      { subject: share.hostPath, hint: "or share over 9p: --transport 9p" },
    );
  };
  return { process: child, ready: ready() };
}
