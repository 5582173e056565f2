import { constants, existsSync } from "node:fs";
import { access, statfs } from "node:fs/promises";
import { dirname, join } from "node:path";
import { chooseAccelerator } from "../boot/accelerator.js";
import { debianKernel } from "../boot/debian-kernel.js";
import { findMicrovmKernel } from "../boot/microvm-kernel-cache.js";
import { cachedVirtiofsd, findHostVirtiofsd } from "../boot/virtiofsd.js";
import { isA3sError } from "../errors.js";
import { mkfsErofsCapabilities, mksquashfsCapabilities, versionAtLeast } from "../formats/image/image-tools.js";
import { cachedImageTool, imageToolKind, type ImageToolName } from "../provision/index.js";
import { guestProgramsPlace, readGuestProgram } from "../programs/guest-programs.js";
import { cacheRoot } from "../util/cache-dir.js";
import { findExecutable } from "../util/host-tool.js";
import { packageManifest, packageRoot } from "../util/package-root.js";
import { hostSystem, type HostSystem } from "./host-system.js";
import {
  CACHE_SPACE_FOR_KERNEL_BUILD,
  CACHE_SPACE_FOR_RUN,
  REQUIREMENT_GROUPS,
  TOOL_REQUIREMENTS,
  type Need,
  type RequirementGroup,
  type ToolRequirement,
} from "./requirements.js";
import { parseVersion, toolVersion } from "./tool-version.js";

/** ok; warn: works, but does less or is slower (the detail says how); fail: a command that needs it fails. */
export type CheckStatus = "ok" | "warn" | "fail";

/** What makes a check pass: a Debian package (from `suite` when given), an a3s-rootfs command, or `make -C guest`. */
export type HostFix =
  | { readonly kind: "apt"; readonly debianPackage: string; readonly suite?: string }
  | { readonly kind: "a3s"; readonly args: readonly string[] }
  | { readonly kind: "make-guest"; readonly dir: string };

export interface HostCheck {
  /** The command or file looked for, or the name of a check: node, guest-programs, kvm, virtiofsd, kernel, microvm-kernel, cache-space. */
  readonly id: string;
  readonly group: RequirementGroup;
  readonly need: Need;
  readonly status: CheckStatus;
  /** Where it was found. */
  readonly path: string | null;
  readonly version: string | null;
  readonly debianPackage: string | null;
  /** The a3s-rootfs commands that need it. */
  readonly neededBy: string;
  /** Why it is not ok, or what was found. */
  readonly detail: string | null;
  readonly fix: HostFix | null;
}

export interface HostReport {
  /** No check failed (warnings allowed). */
  readonly ok: boolean;
  readonly system: { readonly name: string; readonly id: string; readonly codename: string; readonly root: boolean };
  readonly node: string;
  /** The a3s-rootfs that ran the checks: node_modules/a3s-rootfs when installed, else the checkout. */
  readonly packageRoot: string;
  readonly cacheDir: string;
  readonly groups: readonly RequirementGroup[];
  readonly checks: readonly HostCheck[];
}

export interface CheckHostOptions {
  /** Default: defaultGroups(). */
  readonly groups?: readonly RequirementGroup[];
  readonly cacheDir?: string;
  readonly system?: HostSystem;
}

/** build, sources and run; and guest-build where the guest programs are built here (a checkout). */
export function defaultGroups(): RequirementGroup[] {
  return ["build", "sources", "run", ...(guestProgramsPlace().checkout ? (["guest-build"] as const) : [])];
}

/**
 * Checks every host requirement of the chosen groups: each tool (found, its
 * version, its Debian package), Node, the guest programs (against their
 * checksums), KVM, virtiofsd, the kernels in the cache and the room there.
 * Nothing is installed or changed, except the KVM probe's verdict, which
 * `run` caches too.
 */
export async function checkHost(opts: CheckHostOptions = {}): Promise<HostReport> {
  const system = opts.system ?? hostSystem();
  const cacheDir = opts.cacheDir ?? cacheRoot();
  const chosen = new Set(opts.groups ?? defaultGroups());
  const groups = REQUIREMENT_GROUPS.filter((g) => chosen.has(g));
  const checks: HostCheck[] = [];

  if (chosen.has("build")) checks.push(checkNode(), checkGuestPrograms());
  for (const req of TOOL_REQUIREMENTS) {
    const mine = groups.filter((g) => req.groups[g] !== undefined);
    const first = mine[0];
    if (first === undefined) continue;
    const need: Need = mine.some((g) => req.groups[g] === "required") ? "required" : "optional";
    checks.push(await checkTool(req, first, need, system));
  }
  if (chosen.has("build")) checks.push(await checkTarReadingTool("mkfs.erofs", cacheDir), await checkTarReadingTool("mksquashfs", cacheDir));
  if (chosen.has("run")) {
    const kernel = await checkKernel(cacheDir);
    checks.push(kernel.check);
    const qemu = findExecutable("qemu-system-x86_64");
    checks.push(await checkKvm(qemu, kernel.path, cacheDir), await checkVirtiofsd(cacheDir), await checkCacheSpace(cacheDir, "run"));
  }
  if (chosen.has("tests")) checks.push(await checkDebianKernel(cacheDir));
  if (chosen.has("kernel-build")) {
    const built = await checkMicrovmKernel(cacheDir);
    checks.push(built);
    if (built.status !== "ok") checks.push(await checkCacheSpace(cacheDir, "kernel-build"));
  }
  return {
    ok: checks.every((c) => c.status !== "fail"),
    system: { name: system.name, id: system.id, codename: system.codename, root: system.root },
    node: process.versions.node,
    packageRoot: packageRoot(),
    cacheDir,
    groups,
    checks,
  };
}

function check(c: Partial<HostCheck> & Pick<HostCheck, "id" | "group" | "status" | "neededBy">): HostCheck {
  return { need: "required", path: null, version: null, debianPackage: null, detail: null, fix: null, ...c };
}

async function checkTool(req: ToolRequirement, group: RequirementGroup, need: Need, system: HostSystem): Promise<HostCheck> {
  const path = req.command.startsWith("/") ? (existsSync(req.command) ? req.command : undefined) : findExecutable(req.command);
  const base = { id: req.name ?? req.command, group, need, debianPackage: req.debianPackage, neededBy: req.neededBy };
  const fromBackports = req.backports && system.codename === "bookworm" ? { suite: "bookworm-backports" } : {};
  if (!path) {
    return check({
      ...base,
      status: need === "required" ? "fail" : "warn",
      detail: need === "required" ? "not installed" : `not installed: only ${req.neededBy} needs it`,
      fix: { kind: "apt", debianPackage: req.debianPackage, ...fromBackports },
    });
  }
  const version = (await toolVersion(req, path)) ?? null;
  if (req.minimum && version !== null && !versionAtLeast(version, req.minimum.version)) {
    if (req.minimum.rootWorksAround && system.root) {
      return check({ ...base, status: "ok", path, version, detail: `older than ${req.minimum.version}, fine as root (${req.minimum.why})` });
    }
    return check({
      ...base,
      status: "warn",
      path,
      version,
      detail: `older than ${req.minimum.version}: ${req.minimum.why}`,
      // Only Debian 12's backports has a newer one to offer; elsewhere the release's is what apt has.
      fix: req.backports && system.codename === "bookworm" ? { kind: "apt", debianPackage: req.debianPackage, ...fromBackports } : null,
    });
  }
  return check({ ...base, status: "ok", path, version });
}

function checkNode(): HostCheck {
  const engines = packageManifest().engines?.node ?? ">=20";
  const minimum = /(\d+(?:\.\d+)*)/.exec(engines)?.[1] ?? "20";
  const ok = versionAtLeast(process.versions.node, minimum);
  return check({
    id: "node",
    group: "build",
    status: ok ? "ok" : "fail",
    path: process.execPath,
    version: process.versions.node,
    neededBy: "every command",
    detail: ok ? null : `a3s-rootfs needs Node ${engines}`,
  });
}

function checkGuestPrograms(): HostCheck {
  const place = guestProgramsPlace();
  const base = { id: "guest-programs", group: "build" as const, neededBy: "build (the init), demo (the probe), run under TCG (thp-off)", path: place.dir };
  try {
    for (const name of ["init", "probe", "thp-off"] as const) readGuestProgram(name);
    return check({ ...base, status: "ok", detail: `${place.checkout ? "built in this checkout" : "carried by the package"}; match ${place.checksumFile}` });
  } catch (e) {
    if (!isA3sError(e, "EGUEST")) throw e;
    return check({ ...base, status: "fail", detail: e.message, fix: place.checkout ? { kind: "make-guest", dir: join(place.packageRoot, "guest") } : null });
  }
}

/** The kernel a run would boot without --kernel, and its path for the KVM probe. */
async function checkKernel(cacheDir: string): Promise<{ check: HostCheck; path: string | undefined }> {
  const base = { id: "kernel", group: "run" as const, neededBy: "run, demo" };
  const built = await findMicrovmKernel({ cacheDir });
  if (built) {
    return { check: check({ ...base, status: "ok", path: built.path, version: built.release, detail: `the microVM kernel (${built.origin})` }), path: built.path };
  }
  try {
    const debian = await debianKernel({ cacheDir, offline: true });
    return { check: check({ ...base, status: "ok", path: debian.kernelPath, version: debian.release, detail: `Debian's generic kernel (${debian.origin})` }), path: debian.kernelPath };
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    return {
      check: check({ ...base, status: "warn", detail: `no kernel in the cache (${why}); the first run fetches Debian's`, fix: { kind: "a3s", args: ["kernel", "--fetch"] } }),
      path: undefined,
    };
  }
}

/** The tests boot Debian's kernel too, beside the microVM kernel. */
async function checkDebianKernel(cacheDir: string): Promise<HostCheck> {
  const base = { id: "debian-kernel", group: "tests" as const, neededBy: "tests (boots with --kernel debian)" };
  try {
    const debian = await debianKernel({ cacheDir, offline: true });
    return check({ ...base, status: "ok", path: debian.kernelPath, version: debian.release, detail: debian.origin });
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    return check({ ...base, status: "warn", detail: `not in the cache (${why})`, fix: { kind: "a3s", args: ["kernel", "--fetch"] } });
  }
}

async function checkMicrovmKernel(cacheDir: string): Promise<HostCheck> {
  const base = { id: "microvm-kernel", group: "kernel-build" as const, neededBy: "run (boots several times faster than Debian's)" };
  const built = await findMicrovmKernel({ cacheDir });
  if (built) return check({ ...base, status: "ok", path: built.path, version: built.release, detail: built.origin });
  return check({ ...base, status: "warn", detail: "not built for this version's kernel/config; runs boot Debian's kernel", fix: { kind: "a3s", args: ["kernel", "build"] } });
}

async function checkKvm(qemu: string | undefined, kernelPath: string | undefined, cacheDir: string): Promise<HostCheck> {
  const base = { id: "kvm", group: "run" as const, need: "optional" as const, path: "/dev/kvm", neededBy: "run (fast boots; else TCG, several times slower)" };
  if (!existsSync("/dev/kvm")) return check({ ...base, status: "warn", path: null, detail: "no /dev/kvm: runs use TCG" });
  const usable = await access("/dev/kvm", constants.R_OK | constants.W_OK).then(
    () => true,
    () => false,
  );
  if (!usable) return check({ ...base, status: "warn", detail: "/dev/kvm is not readable and writable by this user (add it to the kvm group): runs use TCG" });
  if (!qemu || !kernelPath) return check({ ...base, status: "ok", detail: "/dev/kvm opens; not probed yet (no QEMU or kernel to probe with)" });
  // The probe run uses: a short KVM boot, its verdict cached per host boot.
  const decision = await chooseAccelerator("auto", qemu, kernelPath, cacheDir);
  return check({ ...base, status: decision.accel === "kvm" ? "ok" : "warn", detail: decision.accel === "kvm" ? decision.reason : `${decision.reason}: runs use TCG` });
}

async function checkVirtiofsd(cacheDir: string): Promise<HostCheck> {
  const base = { id: "virtiofsd", group: "run" as const, need: "optional" as const, neededBy: "run --workspace/--skills over virtio-fs (else virtio-9p)" };
  const host = await findHostVirtiofsd();
  if (host) return check({ ...base, status: "ok", path: host.path, version: parseVersion(host.version) ?? host.version, detail: "the host's" });
  try {
    const cached = await cachedVirtiofsd(cacheDir);
    if (cached) return check({ ...base, status: "ok", path: cached.path, version: parseVersion(cached.version) ?? cached.version, detail: "provisioned into the cache, verified" });
  } catch (e) {
    // A damaged bundle: fetching again replaces it.
    return check({ ...base, status: "fail", detail: e instanceof Error ? e.message : String(e), fix: { kind: "a3s", args: ["virtiofsd", "--fetch"] } });
  }
  return check({ ...base, status: "warn", detail: "none on the host or in the cache: shares use virtio-9p until one is fetched", fix: { kind: "a3s", args: ["virtiofsd", "--fetch"] } });
}

/**
 * The mkfs.erofs / mksquashfs that reads a tar stream, so erofs and
 * squashfs outputs need no staging copy: the host's where it can, else
 * Debian 13's provisioned into the cache (verified here like on every use),
 * else a warning: the first such build provisions it.
 */
async function checkTarReadingTool(tool: ImageToolName, cacheDir: string): Promise<HostCheck> {
  const kind = imageToolKind(tool);
  const base = { id: `${tool} (tar input)`, group: "build" as const, need: "optional" as const, debianPackage: kind.name, neededBy: `build -o ${tool === "mkfs.erofs" ? "erofs" : "squashfs"}: without a staging copy` };
  const hostPath = findExecutable(tool);
  if (hostPath) {
    const caps = tool === "mkfs.erofs" ? await mkfsErofsCapabilities(hostPath) : await mksquashfsCapabilities(hostPath);
    if (caps.tarInput) return check({ ...base, status: "ok", path: hostPath, version: caps.version, detail: "the host's reads a tar stream" });
  }
  try {
    const cached = await cachedImageTool(cacheDir, tool);
    if (cached) return check({ ...base, status: "ok", path: cached.command.label, version: parseVersion(cached.version) ?? cached.version, detail: "Debian 13's, provisioned into the cache, verified" });
  } catch (e) {
    // A damaged bundle: the next build that needs it fetches a fresh one in its place.
    return check({ ...base, status: "warn", detail: `${e instanceof Error ? e.message : String(e)}; the next build of this format fetches a fresh copy` });
  }
  return check({
    ...base,
    status: "warn",
    detail: `the host's cannot read a tar stream (${kind.name} 1.7/4.6 or newer can); the first build of this format fetches Debian 13's into the cache`,
  });
}

async function checkCacheSpace(cacheDir: string, group: "run" | "kernel-build"): Promise<HostCheck> {
  const needed = group === "run" ? CACHE_SPACE_FOR_RUN : CACHE_SPACE_FOR_KERNEL_BUILD;
  let dir = cacheDir;
  while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
  const fs = await statfs(dir);
  const free = fs.bavail * fs.bsize;
  const gib = (n: number): string => `${(n / 1024 ** 3).toFixed(1)} GiB`;
  return check({
    id: "cache-space",
    group,
    status: free >= needed ? "ok" : group === "run" ? "warn" : "fail",
    path: cacheDir,
    version: null,
    neededBy: group === "run" ? "run (kernels, virtiofsd, image blobs)" : "kernel build (the source and objects)",
    detail: `${gib(free)} free on ${dir}; ${group === "run" ? "runs want" : "a kernel build needs"} ${gib(needed)}${free >= needed ? "" : " (free some, or point A3S_CACHE_DIR at a larger disk)"}`,
  });
}

