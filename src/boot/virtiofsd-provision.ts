import { createHash } from "node:crypto";
import { chmod, copyFile, mkdir, mkdtemp, realpath, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { readElfFile } from "../formats/elf/index.js";
import { A3sError } from "../errors.js";
import { DOCTOR_HINT, requireTool, runTool } from "../util/host-tool.js";
import { PrivateApt, type AptPackage, type AptSuiteSource } from "./private-apt.js";
import {
  bundleCommand,
  MANIFEST,
  readManifest,
  sha256File,
  verifyBundle,
  virtiofsdCacheDir,
  type VirtiofsdManifest,
} from "./virtiofsd-bundle.js";

/**
 * Where virtiofsd comes from when the host has none: Debian 13 (trixie),
 * the first Debian release that packages the Rust virtiofsd. Its point
 * releases and security updates replace versions in the archive (the old
 * ones leave deb.debian.org), so the suites are pinned, not the versions;
 * the manifest records the exact versions and hashes that were fetched.
 */
export const VIRTIOFSD_SUITES = ["trixie", "trixie-updates", "trixie-security"] as const;
const DEBIAN_MIRROR = "http://deb.debian.org/debian";
const DEBIAN_SECURITY_MIRROR = "http://deb.debian.org/debian-security";
/** Debian 12's debian-archive-keyring already holds trixie's archive and release keys. */
const DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg";
/** virtiofsd and the packages holding the libraries it links (glibc's loader comes with libc6). */
export const VIRTIOFSD_PACKAGES = ["virtiofsd", "libc6", "libseccomp2", "libcap-ng0", "libgcc-s1"] as const;
/** Where the virtiofsd package installs the program. */
const PROGRAM_IN_PACKAGE = "usr/libexec/virtiofsd";

/**
 * Fetches virtiofsd and its libraries from Debian 13 through a private apt
 * configuration (private-apt.ts: apt verifies the signed index and each
 * .deb), unpacks them with dpkg-deb, keeps the program, its loader and the
 * closure of libraries it needs, and publishes them as one bundle in the
 * cache in a single rename. Returns the bundle directory. When a bundle with
 * exactly these package versions is already there and intact, it is kept.
 */
export async function provisionVirtiofsd(cache: string, progress: (m: string) => void): Promise<string> {
  const keyring = DEBIAN_KEYRING;
  if (!(await stat(keyring).then((s) => s.isFile(), () => false))) {
    throw new A3sError("ETOOL", `${keyring} is missing, so Debian's archive signatures cannot be checked`, {
      subject: keyring,
      hint: `apt-get install debian-archive-keyring   (${DOCTOR_HINT})`,
    });
  }
  const arch = (await runTool(requireTool("dpkg", "dpkg"), ["--print-architecture"])).stdout.trim();
  const root = virtiofsdCacheDir(cache);
  await mkdir(root, { recursive: true });
  const work = await mkdtemp(join(root, ".fetch-"));
  try {
    const sources: AptSuiteSource[] = VIRTIOFSD_SUITES.map((suite) => ({
      uri: suite.endsWith("-security") ? DEBIAN_SECURITY_MIRROR : DEBIAN_MIRROR,
      suite,
      components: ["main"],
      keyring,
    }));
    const apt = await PrivateApt.create(join(work, "apt"), sources, arch);
    progress(`virtiofsd: reading Debian 13's package lists (${VIRTIOFSD_SUITES.join(", ")}) with a private apt configuration`);
    await apt.update();
    const packages = await apt.resolve(VIRTIOFSD_PACKAGES);
    const name = bundleName(packages);
    const final = join(root, name);
    const existing = await readManifest(final).catch(() => undefined);
    if (existing && (await verifyBundle(final, existing).then(() => true, () => false))) {
      progress(`virtiofsd: ${name} is already in the cache and intact`);
      return final;
    }

    progress(`virtiofsd: downloading ${packages.map((p) => `${p.name} ${p.version}`).join(", ")}`);
    const debs = await apt.download(packages);
    const unpacked = join(work, "unpacked");
    const records: VirtiofsdManifest["packages"][number][] = [];
    const owner = new Map<string, string>();
    for (const p of packages) {
      const deb = debs.get(p.name) as string;
      const { sha256 } = await sha256File(deb);
      // apt already refused a .deb whose hash differs from the signed
      // index; checking again here makes the manifest's record a fact.
      if (sha256 !== p.sha256) {
        throw new A3sError("EVIRTIOFSD", `${basename(deb)} has SHA256 ${sha256}, but Debian's index lists ${p.sha256}`, { subject: p.filename });
      }
      records.push({ name: p.name, version: p.version, filename: p.filename, sha256 });
      const dest = join(unpacked, p.name);
      await mkdir(dest, { recursive: true });
      await runTool(requireTool("dpkg-deb", "dpkg"), ["-x", deb, dest]);
      owner.set(dest, p.name);
    }

    const staged = join(work, "bundle");
    await mkdir(join(staged, "bin"), { recursive: true });
    await mkdir(join(staged, "lib"));
    const files: { path: string; from: string; package: string }[] = [];
    const program = join(unpacked, "virtiofsd", PROGRAM_IN_PACKAGE);
    files.push({ path: "bin/virtiofsd", from: program, package: "virtiofsd" });
    const closure = await libraryClosure(program, [...owner.keys()].map((d) => join(d, "usr/lib", multiarchOf(arch))));
    for (const lib of closure) {
      files.push({ path: `lib/${lib.name}`, from: lib.path, package: owner.get(lib.packageDir) ?? "?" });
    }
    const manifestFiles: { path: string; sha256: string; size: number; package: string }[] = [];
    for (const f of files) {
      await copyFile(f.from, join(staged, f.path));
      // Read-only, so that nothing edits a cached file by accident; the hashes catch the rest.
      await chmod(join(staged, f.path), 0o555);
      manifestFiles.push({ path: f.path, package: f.package, ...(await sha256File(join(staged, f.path))) });
    }
    const loader = closure.find((l) => l.isLoader);
    if (!loader) throw new A3sError("EVIRTIOFSD", "the libc6 package holds no dynamic loader for virtiofsd", { subject: "libc6" });
    const manifest: VirtiofsdManifest = {
      format: 1,
      version: "",
      suites: [...VIRTIOFSD_SUITES],
      fetchedAt: new Date().toISOString(),
      packages: records,
      files: manifestFiles,
      program: "bin/virtiofsd",
      loader: `lib/${loader.name}`,
      libraryDir: "lib",
    };
    const cmd = bundleCommand(staged, manifest);
    const version = (await runTool(cmd.file, [...cmd.prefix, "--version"], { env: {} })).stdout.trim();
    if (!/^virtiofsd \d/.test(version)) {
      throw new A3sError("EVIRTIOFSD", `the fetched virtiofsd printed ${JSON.stringify(version)} for --version`, { subject: name });
    }
    await writeFile(join(staged, MANIFEST), JSON.stringify({ ...manifest, version }, null, 2) + "\n");
    // A damaged bundle of the same name (verification failed above) goes
    // aside first, since a directory cannot be renamed over a full one.
    if (existing !== undefined || (await stat(final).then(() => true, () => false))) {
      await rename(final, join(work, "damaged")).catch(() => {});
    }
    await rename(staged, final).catch(async (e: NodeJS.ErrnoException) => {
      // A concurrent fetch published the same versions first: use that one.
      if (e.code !== "ENOTEMPTY" && e.code !== "EEXIST") throw e;
    });
    progress(`virtiofsd: ${version} published in ${final}`);
    return final;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The bundle's directory name: the virtiofsd version and a digest of every package version in it. */
function bundleName(packages: readonly AptPackage[]): string {
  const set = packages.map((p) => `${p.name}=${p.version}\n`).sort().join("");
  const digest = createHash("sha256").update(set).digest("hex").slice(0, 12);
  const virtiofsd = packages.find((p) => p.name === "virtiofsd")?.version ?? "unknown";
  return `virtiofsd_${virtiofsd.replace(/[^A-Za-z0-9.+~-]/g, "_")}+${digest}`;
}

function multiarchOf(arch: string): string {
  const triplets: Record<string, string> = { amd64: "x86_64-linux-gnu", arm64: "aarch64-linux-gnu", riscv64: "riscv64-linux-gnu" };
  const t = triplets[arch];
  if (!t) throw new A3sError("EARCH", `provisioning virtiofsd is not supported on ${arch}`, { hint: "install virtiofsd from your distribution" });
  return t;
}

interface ClosureLibrary {
  /** The name the loader looks for (DT_NEEDED, or the loader's own file name). */
  readonly name: string;
  /** The file it resolves to, symbolic links followed. */
  readonly path: string;
  /** The unpacked package it came from. */
  readonly packageDir: string;
  readonly isLoader: boolean;
}

/**
 * The program's loader (PT_INTERP) and every library it needs, transitively
 * (DT_NEEDED), looked up only in the unpacked packages' library directories:
 * a library the packages lack is an error here, not a silent fall-back to the
 * host's copy at run time.
 */
async function libraryClosure(program: string, libDirs: readonly string[]): Promise<ClosureLibrary[]> {
  const elf = await readElfFile(program);
  if (!elf?.interpreter) throw new A3sError("EVIRTIOFSD", "the packaged virtiofsd is not a dynamically linked ELF program", { subject: program });
  const found = new Map<string, ClosureLibrary>();
  const locate = async (name: string): Promise<{ path: string; packageDir: string } | undefined> => {
    for (const dir of libDirs) {
      const candidate = join(dir, name);
      const real = await realpath(candidate).catch(() => undefined);
      if (real) return { path: real, packageDir: packageDirOf(dir) };
    }
    return undefined;
  };
  const loaderName = basename(elf.interpreter);
  const loader = await locate(loaderName);
  if (!loader) throw new A3sError("EVIRTIOFSD", `no package provides virtiofsd's loader ${elf.interpreter}`, { subject: elf.interpreter });
  found.set(loaderName, { name: loaderName, ...loader, isLoader: true });
  const queue = [...elf.needed];
  while (queue.length) {
    const name = queue.shift() as string;
    if (found.has(name)) continue;
    const lib = await locate(name);
    if (!lib) {
      throw new A3sError("EVIRTIOFSD", `virtiofsd needs ${name}, which none of ${VIRTIOFSD_PACKAGES.join(", ")} provides`, {
        subject: name,
        hint: "the package's dependencies changed: add the package that holds it to VIRTIOFSD_PACKAGES",
      });
    }
    found.set(name, { name, ...lib, isLoader: false });
    const info = await readElfFile(lib.path);
    queue.push(...(info?.needed ?? []));
  }
  return [...found.values()];
}

/** unpacked/PACKAGE/usr/lib/TRIPLET → unpacked/PACKAGE */
function packageDirOf(libDir: string): string {
  const parts = libDir.split("/");
  return parts.slice(0, parts.length - 3).join("/");
}

