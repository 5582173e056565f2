import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rename, rm, statfs, writeFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { A3sError } from "../errors.js";
import { cacheRoot } from "../util/cache-dir.js";
import { findExecutable, requireTool, runTool } from "../util/host-tool.js";
import { pvhEntryPoint } from "./extract-vmlinux.js";
import { configHash, loadKernelConfig, parseDotConfig, renderMergedConfig, requireConfig } from "./kernel-config.js";
import { kernelBuildAborted, runKbuild } from "./kernel-make.js";
import { loadKernelPatches, patchArgs } from "./kernel-patches.js";
import { DEFAULT_SOURCE_PACKAGE, extractLinuxSource, fetchLinuxSource, linuxSourcePackage } from "./kernel-source.js";
import {
  listMicrovmKernels,
  microvmKernelDirName,
  microvmKernelsDir,
  readMicrovmKernel,
  type MicrovmKernel,
  type MicrovmKernelManifest,
} from "./microvm-kernel-cache.js";

export interface BuildKernelOptions {
  readonly cacheDir?: string;
  /** Debian's source package (default linux-source-6.12). */
  readonly sourcePackage?: string;
  /** Fragments directory (default: the package's kernel/config). */
  readonly fragmentsDir?: string;
  /** Source patches directory (default: the package's kernel/patches). */
  readonly patchesDir?: string;
  /** Parallel compile jobs (default: the CPUs this process may use). */
  readonly jobs?: number;
  readonly progress?: (message: string) => void;
  /** Each kbuild step, with the count so far and the expected total (an estimate, from the last build). */
  readonly onStep?: (done: number, expected: number) => void;
  /** Aborting stops make, removes the build directory and publishes nothing. */
  readonly signal?: AbortSignal;
}

export interface BuildKernelResult {
  readonly kernel: MicrovmKernel;
  /** True when the kernel was already cached and nothing was built. */
  readonly cached: boolean;
  readonly durationMs: number;
}

/** Steps kbuild reports for the shipped fragments on 6.12 (measured); the last build's count replaces it. */
const DEFAULT_EXPECTED_STEPS = 1900;
/** Room the source tree (about 1.7 GB) and the objects need while building. */
const FREE_BYTES_NEEDED = 4 * 1024 ** 3;

/** Host tools the kernel build runs, with the Debian package of each. */
const BUILD_TOOLS: readonly (readonly [string, string])[] = [
  ["make", "make"],
  ["gcc", "gcc"],
  ["ld", "binutils"],
  ["flex", "flex"],
  ["bison", "bison"],
  ["bc", "bc"],
  ["perl", "perl"],
  ["xz", "xz-utils"],
  ["patch", "patch"],
];
/** Headers the host-side build tools include: objtool reads ELF with libelf. */
const BUILD_HEADERS: readonly (readonly [string, string])[] = [["/usr/include/libelf.h", "libelf-dev"]];

/**
 * Builds the microVM kernel from Debian's linux-source package and the
 * config fragments, or returns the cached one when a kernel of this source
 * version and config hash is already built.
 *
 * The build: the source .deb (cached, sha256-checked against apt's index)
 * is unpacked into a directory beside the cache, configured with the
 * kernel's merge_config.sh onto allnoconfig (after kernel/patches/*.patch
 * are applied to it), checked option by option
 * against the fragments, built out of tree (`make O=... vmlinux`) with
 * fixed KBUILD_BUILD_* values so the same source and config give the same
 * bytes, checked again, and published into the cache by one rename. The
 * build directory is removed whatever happens; on failure the make log is
 * kept as kernels/microvm-build.log.
 */
export async function buildMicrovmKernel(opts: BuildKernelOptions = {}): Promise<BuildKernelResult> {
  const started = performance.now();
  const progress = opts.progress ?? (() => {});
  const cacheDir = opts.cacheDir ?? cacheRoot();
  const kernelsDir = microvmKernelsDir(cacheDir);
  const merged = await loadKernelConfig(opts.fragmentsDir);
  const patches = await loadKernelPatches(opts.patchesDir);
  const hash = configHash(merged, patches);
  const pkg = await linuxSourcePackage(opts.sourcePackage ?? DEFAULT_SOURCE_PACKAGE);
  const finalDir = join(kernelsDir, microvmKernelDirName(pkg.version, hash));

  const cached = await readMicrovmKernel(finalDir);
  if (cached) return { kernel: cached, cached: true, durationMs: Math.round(performance.now() - started) };
  checkBuildTools();
  await requireFreeSpace(kernelsDir);
  const deb = await fetchLinuxSource(pkg, join(kernelsDir, "sources"), { progress, ...(opts.signal ? { signal: opts.signal } : {}) });

  await removeAbandonedBuilds(kernelsDir);
  const work = await mkdtemp(join(kernelsDir, `.build-${process.pid}-`));
  const log = join(work, "build.log");
  try {
    progress(`unpacking ${pkg.name} ${pkg.version}`);
    const { srcDir, sourceDate } = await extractLinuxSource(deb, work, opts.signal ? { signal: opts.signal } : {});
    const obj = join(work, "obj");
    await mkdir(obj);
    const env = kbuildEnv(sourceDate);
    const run = (what: string, command: string, args: string[], onStep?: (n: number) => void): Promise<number> =>
      runKbuild(command, { cwd: srcDir, args, env, logFile: log, what, ...(onStep ? { onStep } : {}), ...(opts.signal ? { signal: opts.signal } : {}) });

    for (const p of patches) {
      progress(`applying ${p.name}`);
      await run(`applying the kernel patch ${p.path}`, "patch", patchArgs(p, srcDir));
    }

    progress(`configuring: ${merged.settings.length} options from ${merged.fragments.length} fragments onto allnoconfig`);
    const mergedFile = join(work, "fragments.config");
    await writeFile(mergedFile, renderMergedConfig(merged));
    await run("configuring the kernel", "bash", ["scripts/kconfig/merge_config.sh", "-n", "-O", obj, mergedFile]);
    await run("configuring the kernel", "make", [`O=${obj}`, "olddefconfig"]);
    requireConfig(merged, await readFile(join(obj, ".config"), "utf8"), "after configuring");

    const jobs = opts.jobs ?? availableParallelism();
    const expected = (await listMicrovmKernels(cacheDir)).find((k) => k.buildSteps > 0)?.buildSteps ?? DEFAULT_EXPECTED_STEPS;
    progress(`compiling vmlinux with ${jobs} job${jobs === 1 ? "" : "s"} (this takes minutes)`);
    const steps = await run("building the kernel", "make", [`O=${obj}`, `-j${jobs}`, "vmlinux"], (n) => opts.onStep?.(n, expected));
    // The build re-reads the config and may adjust it for the compiler: check again.
    const config = await readFile(join(obj, ".config"), "utf8");
    requireConfig(merged, config, "after building");

    const staged = await stageKernel({ work, obj, config, mergedFile, merged, patches: patches.map((p) => p.name), hash, pkg, steps, started });
    // One rename publishes it; a concurrent build that finished first already
    // put the same kernel there, and that one is kept.
    await rename(staged, finalDir).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== "ENOTEMPTY" && e.code !== "EEXIST") throw e;
    });
    const kernel = await readMicrovmKernel(finalDir);
    if (!kernel) throw new A3sError("EKERNEL", `the kernel in ${finalDir} is incomplete`, { subject: finalDir });
    return { kernel, cached: false, durationMs: Math.round(performance.now() - started) };
  } catch (e) {
    if (opts.signal?.aborted) throw kernelBuildAborted();
    if (existsSync(log)) {
      const kept = join(kernelsDir, "microvm-build.log");
      await copyFile(log, kept).catch(() => {});
      if (e instanceof A3sError) throw new A3sError(e.code, e.message, { subject: e.subject ?? kept, hint: e.hint ?? `the whole log: ${kept}` });
    }
    throw e;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}


/** Makes sure the cache's disk has room for a kernel build (its object tree is several GiB). */
async function requireFreeSpace(kernelsDir: string): Promise<void> {
  await mkdir(kernelsDir, { recursive: true });
  const fs = await statfs(kernelsDir);
  if (fs.bavail * fs.bsize < FREE_BYTES_NEEDED) {
    throw new A3sError("ESPACE", `building the kernel needs about 4 GiB free in ${kernelsDir}; there are ${Math.floor((fs.bavail * fs.bsize) / 1024 ** 2)} MiB`, {
      subject: kernelsDir,
      hint: "free some space, or point A3S_CACHE_DIR at a larger disk",
    });
  }
}

/**
 * The built kernel as it will sit in the cache, staged in `work/kernel`:
 * vmlinux (checked for its PVH entry note), the config it was built with,
 * the merged fragments, and kernel.json describing them. Returns the
 * staged directory.
 */
async function stageKernel(b: {
  work: string;
  obj: string;
  config: string;
  mergedFile: string;
  merged: Awaited<ReturnType<typeof loadKernelConfig>>;
  patches: readonly string[];
  hash: string;
  pkg: Awaited<ReturnType<typeof linuxSourcePackage>>;
  steps: number;
  started: number;
}): Promise<string> {
  const { work, obj, config, mergedFile, merged, patches, hash, pkg, steps, started } = b;
  const vmlinux = await readFile(join(obj, "vmlinux"));
  const entry = pvhEntryPoint(vmlinux);
  if (entry === undefined) {
    throw new A3sError("EKERNEL", "the built vmlinux has no PVH entry note, so QEMU cannot boot it", { hint: "keep CONFIG_PVH=y in kernel/config" });
  }
  const release = (await readFile(join(obj, "include", "config", "kernel.release"), "utf8")).trim();
  const staged = join(work, "kernel");
  await mkdir(staged);
  await copyFile(join(obj, "vmlinux"), join(staged, "vmlinux"));
  await writeFile(join(staged, "config"), config);
  await copyFile(mergedFile, join(staged, "fragments.config"));
  const manifest: MicrovmKernelManifest = {
    format: 1,
    release,
    sourcePackage: pkg.name,
    sourceVersion: pkg.version,
    configHash: hash,
    fragments: merged.fragments,
    patches,
    hz: Number(parseDotConfig(config).get("CONFIG_HZ")),
    bytes: vmlinux.length,
    sha256: createHash("sha256").update(vmlinux).digest("hex"),
    pvhEntry: `0x${entry.toString(16)}`,
    compiler: await compilerVersion(),
    buildSteps: steps,
    durationMs: Math.round(performance.now() - started),
    builtAt: new Date().toISOString(),
  };
  await writeFile(join(staged, "kernel.json"), JSON.stringify(manifest, null, 2) + "\n");
  return staged;
}

/**
 * The environment of every make: only what the build needs, so the user's
 * MAKEFLAGS, CC or ARCH cannot change the kernel, and the values kbuild
 * stamps into it (build time, user, host, build number) fixed: the same
 * source and config give the same bytes. The build time is the source
 * tarball's date, so it still tells which source a kernel came from.
 */
export function kbuildEnv(sourceDate: Date): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? "/",
    LC_ALL: "C",
    TZ: "UTC",
    ARCH: "x86_64",
    KBUILD_BUILD_TIMESTAMP: sourceDate.toUTCString(),
    KBUILD_BUILD_USER: "a3s",
    KBUILD_BUILD_HOST: "a3s-rootfs",
    KBUILD_BUILD_VERSION: "1",
    // Set and empty: setlocalversion then adds no "+" for a source tree it takes for a dirty git checkout.
    LOCALVERSION: "",
    SOURCE_DATE_EPOCH: String(Math.floor(sourceDate.getTime() / 1000)),
  };
}

/**
 * Removes build directories left by a build that was killed outright
 * (SIGKILL, a second Ctrl-C during clean-up, a crash): each is gigabytes.
 * The directory's name carries its builder's pid; one whose builder is
 * still running (a concurrent build) is left alone.
 */
export async function removeAbandonedBuilds(kernelsDir: string): Promise<void> {
  for (const name of await readdir(kernelsDir).catch(() => [] as string[])) {
    const pid = Number(/^\.build-(\d+)-/.exec(name)?.[1]);
    if (!pid || processAlive(pid)) continue;
    await rm(join(kernelsDir, name), { recursive: true, force: true });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Every missing build tool in one error, with the apt-get line that installs them all. */
function checkBuildTools(): void {
  const missing = new Set<string>();
  for (const [tool, pkg] of BUILD_TOOLS) if (!findExecutable(tool)) missing.add(pkg);
  for (const [header, pkg] of BUILD_HEADERS) if (!existsSync(header)) missing.add(pkg);
  if (missing.size === 0) return;
  const list = [...missing].join(" ");
  throw new A3sError("ETOOL", `building the kernel needs Debian packages that are not installed: ${list}`, {
    subject: list,
    hint: `apt-get install ${list}   (a3s-rootfs doctor --with kernel-build checks them all, doctor --fix --with kernel-build installs them)`,
  });
}

async function compilerVersion(): Promise<string> {
  return (await runTool(requireTool("gcc", "gcc"), ["--version"])).stdout.split("\n")[0]?.trim() ?? "unknown";
}
