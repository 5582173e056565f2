import { mkdir, mkdtemp, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { A3sError } from "../errors.js";
import { fileSha256 } from "../util/file-sha256.js";
import { requireTool, runTool } from "../util/host-tool.js";
import { kernelBuildAborted } from "./kernel-make.js";

/**
 * The Linux source the microVM kernel is built from: Debian's
 * linux-source-SERIES package, fetched with `apt-get download` (apt checks
 * it against the archive's signed index) and kept in the cache, where its
 * sha256 is checked against apt's index again before each use.
 */

/** The kernel series built by default: Debian 12's newest (from bookworm-security) and Debian 13's own. */
export const DEFAULT_SOURCE_PACKAGE = "linux-source-6.12";

export interface SourcePackage {
  readonly name: string;
  readonly version: string;
  /** sha256 of the .deb, from apt's signed index. */
  readonly sha256: string;
  readonly size: number;
}

/** What apt's index says about the package's candidate version (no download). */
export async function linuxSourcePackage(name: string = DEFAULT_SOURCE_PACKAGE): Promise<SourcePackage> {
  requireTool("apt-cache", "apt");
  const show = (await runTool("apt-cache", ["show", "--no-all-versions", name]).catch(() => undefined))?.stdout ?? "";
  const field = (f: string): string | undefined => new RegExp(`^${f}: (\\S+)`, "m").exec(show)?.[1];
  const version = field("Version");
  const sha256 = field("SHA256");
  const size = Number(field("Size"));
  if (!version || !sha256 || !Number.isFinite(size)) {
    throw new A3sError("EKERNEL", `apt does not know the package ${name}, the Linux source the microVM kernel is built from`, {
      subject: name,
      hint:
        "run apt-get update; on Debian 12, linux-source-6.12 comes from bookworm-security " +
        "(deb http://security.debian.org/debian-security bookworm-security main)",
    });
  }
  return { name, version, sha256, size };
}

/** The .deb file name apt uses (an epoch's ":" is written "%3a"). */
export function debFileName(pkg: Pick<SourcePackage, "name" | "version">): string {
  return `${pkg.name}_${pkg.version.replace(/:/g, "%3a")}_all.deb`;
}

/**
 * The package's .deb in `sourcesDir`, downloaded if it is not there or does
 * not match apt's sha256. A download appears under its final name only once
 * complete and checked.
 */
export async function fetchLinuxSource(
  pkg: SourcePackage,
  sourcesDir: string,
  opts: { progress?: (m: string) => void; signal?: AbortSignal } = {},
): Promise<string> {
  const progress = opts.progress ?? (() => {});
  const deb = join(sourcesDir, debFileName(pkg));
  if (await stat(deb).then((s) => s.size === pkg.size, () => false)) {
    if ((await fileSha256(deb)).sha256 === pkg.sha256) return deb;
    progress(`the cached ${debFileName(pkg)} does not match apt's sha256: downloading it again`);
  }
  await mkdir(sourcesDir, { recursive: true });
  const work = await mkdtemp(join(sourcesDir, ".download-"));
  try {
    progress(`downloading ${pkg.name} ${pkg.version} (${Math.round(pkg.size / 1e6)} MB) with apt-get download`);
    await runTool(requireTool("apt-get", "apt"), ["download", `${pkg.name}=${pkg.version}`], {
      cwd: work,
      ...(opts.signal ? { signal: opts.signal } : {}),
    }).catch((e: unknown) => {
      throwIfAborted(opts.signal);
      throw e;
    });
    const got = (await readdir(work)).find((n) => n.endsWith(".deb"));
    if (!got) throw new A3sError("EKERNEL", `apt-get download produced no .deb for ${pkg.name}`, { subject: pkg.name });
    const digest = (await fileSha256(join(work, got))).sha256;
    if (digest !== pkg.sha256) {
      throw new A3sError("EKERNEL", `${got} has sha256 ${digest}, but apt's index says ${pkg.sha256}`, {
        subject: got,
        hint: "run apt-get update and try again",
      });
    }
    await rename(join(work, got), deb);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return deb;
}

/**
 * Unpacks the kernel tree from the .deb into the directory `dest`: returns
 * the tree's directory and the time the Debian
 * build stamped on the source tarball, used as the kernel's build timestamp
 * so the same source gives the same bytes.
 */
export async function extractLinuxSource(
  deb: string,
  dest: string,
  opts: { signal?: AbortSignal } = {},
): Promise<{ srcDir: string; sourceDate: Date }> {
  const spawnOpts = opts.signal ? { signal: opts.signal } : {};
  const unpacked = join(dest, "deb");
  const guard = (e: unknown): never => {
    throwIfAborted(opts.signal);
    throw e;
  };
  await runTool(requireTool("dpkg-deb", "dpkg"), ["-x", deb, unpacked], spawnOpts).catch(guard);
  const srcRoot = join(unpacked, "usr", "src");
  const tarball = (await readdir(srcRoot).catch(() => [] as string[])).find((n) => /^linux-source-.*\.tar\.(xz|gz|bz2|zst)$/.test(n));
  if (!tarball) throw new A3sError("EKERNEL", `${deb} holds no linux-source tarball under /usr/src`, { subject: deb });
  const sourceDate = (await stat(join(srcRoot, tarball))).mtime;
  await runTool(requireTool("tar", "tar"), ["-xf", join(srcRoot, tarball), "-C", dest], spawnOpts).catch(guard);
  await rm(unpacked, { recursive: true, force: true });
  const top = tarball.replace(/\.tar\.\w+$/, "");
  const srcDir = join(dest, top);
  if (!(await stat(join(srcDir, "Makefile")).then((s) => s.isFile(), () => false))) {
    throw new A3sError("EKERNEL", `${tarball} in ${deb} does not unpack to a kernel tree ${top}/`, { subject: deb });
  }
  return { srcDir, sourceDate };
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw kernelBuildAborted();
}
