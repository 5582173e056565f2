import { createHash } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { A3sError } from "../errors.js";
import { cacheRoot } from "../util/cache-dir.js";
import { requireTool, runTool } from "../util/host-tool.js";
import { writeFileAtomic } from "../util/write-file-atomic.js";

export interface DebianKernelPackage {
  readonly name: string;
  readonly version: string;
}

/** What apt's answer depends on, where apt keeps it by default: its package lists, its configuration, dpkg's status. */
export const APT_STATE_PATHS: readonly string[] = ["/var/lib/apt/lists", "/etc/apt", "/var/lib/dpkg/status"];

/** The memo's file, beside the kernels it names. */
export function debianKernelPackageMemo(cacheDir: string): string {
  return join(cacheDir, "kernels", "debian-kernel-package.json");
}

// Both become part of a cache directory's name (debian-kernel.ts): nothing
// that could climb out of it, whether apt or a damaged memo said it.
const PACKAGE_NAME = /^linux-image-[a-z0-9][a-z0-9.+-]*$/;
const PACKAGE_VERSION = /^[A-Za-z0-9][A-Za-z0-9.+~:-]*$/;

/**
 * The Debian kernel package the host's release would install: what
 * linux-image-ARCH depends on. One `apt-cache show` of that metapackage
 * names the package and, pinned with "(= VERSION)" as Debian's are, its
 * version.
 *
 * Every run with Debian's kernel needs this, and an apt-cache call reads
 * every package list: about a second where apt keeps no binary cache
 * (`Dir::Cache::pkgcache ""`, as container images set it). So the answer is
 * remembered in the cache with a fingerprint of apt's state: the names,
 * sizes and modification times of its lists, of its configuration files and
 * of dpkg's status. `apt-get update`, a new source or pin, or any package
 * installed changes it, and apt is asked again. With APT_CONFIG set (apt
 * reads another configuration) nothing is remembered.
 */
export async function debianKernelPackage(opts: { cacheDir?: string; aptState?: readonly string[] } = {}): Promise<DebianKernelPackage> {
  requireTool("apt-cache", "apt");
  const arch = (await runTool(requireTool("dpkg", "dpkg"), ["--print-architecture"])).stdout.trim();
  const memo = debianKernelPackageMemo(opts.cacheDir ?? cacheRoot());
  const fingerprint = process.env.APT_CONFIG ? undefined : await aptStateFingerprint(arch, opts.aptState ?? APT_STATE_PATHS);
  if (fingerprint) {
    const known = await readMemo(memo);
    if (known?.fingerprint === fingerprint) return { name: known.name, version: known.version };
  }
  const pkg = await askApt(arch);
  // A cache this process cannot write only means asking apt again next time.
  if (fingerprint) await writeFileAtomic(memo, JSON.stringify({ fingerprint, ...pkg }, null, 2) + "\n").catch(() => undefined);
  return pkg;
}

async function askApt(arch: string): Promise<DebianKernelPackage> {
  const meta = `linux-image-${arch}`;
  const show = (await runTool("apt-cache", ["show", "--no-all-versions", meta]).catch(() => undefined))?.stdout ?? "";
  const depends = /^Depends: (linux-image-[^\s|,]+)(?: \(= ([^)\s]+)\))?/m.exec(show);
  const name = depends?.[1];
  if (!name || !PACKAGE_NAME.test(name)) {
    throw new A3sError("EKERNEL", `apt does not know the package ${meta}, so the Debian kernel cannot be found`, {
      subject: meta,
      hint: "run apt-get update, or pass --kernel FILE",
    });
  }
  // A metapackage that does not pin it: the kernel package's own candidate.
  const version = depends?.[2] ?? /^Version: (\S+)/m.exec((await runTool("apt-cache", ["show", "--no-all-versions", name])).stdout)?.[1];
  if (!version || !PACKAGE_VERSION.test(version)) throw new A3sError("EKERNEL", `apt has no usable version of ${name}`, { subject: name });
  return { name, version };
}

/**
 * A digest of the architecture and of every file under `paths`: its path,
 * size and modification time (ns). A path that is missing or cannot be read
 * counts as such, so its appearing changes the digest too.
 */
export async function aptStateFingerprint(arch: string, paths: readonly string[]): Promise<string> {
  const h = createHash("sha256").update(`arch ${arch}\n`);
  const visit = async (path: string): Promise<void> => {
    const st = await stat(path, { bigint: true }).catch((e: NodeJS.ErrnoException) => e);
    if (st instanceof Error) {
      h.update(`${path}\0${st.code ?? "error"}\n`);
    } else if (st.isDirectory()) {
      const names = await readdir(path).catch((e: NodeJS.ErrnoException) => e);
      if (names instanceof Error) h.update(`${path}/\0${names.code ?? "error"}\n`);
      else for (const name of names.sort()) await visit(join(path, name));
    } else {
      h.update(`${path}\0${st.size}\0${st.mtimeNs}\n`);
    }
  };
  for (const p of paths) await visit(p);
  return h.digest("hex");
}

async function readMemo(path: string): Promise<(DebianKernelPackage & { fingerprint: string }) | undefined> {
  try {
    const m = JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
    const { fingerprint, name, version } = m;
    if (typeof fingerprint !== "string" || typeof name !== "string" || typeof version !== "string") return undefined;
    if (!PACKAGE_NAME.test(name) || !PACKAGE_VERSION.test(version)) return undefined;
    return { fingerprint, name, version };
  } catch {
    return undefined;
  }
}
