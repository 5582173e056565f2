import { createHash } from "node:crypto";
import { chmod, copyFile, mkdir, mkdtemp, realpath, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { A3sError } from "../errors.js";
import { readElfFile } from "../formats/elf/index.js";
import { DOCTOR_HINT, requireTool, runTool, runToolCommand, type ToolCommand } from "../util/host-tool.js";
import { PrivateApt, type AptPackage, type AptSuiteSource } from "./private-apt.js";
import {
  bundleCacheDir,
  bundleCommand,
  MANIFEST,
  readManifest,
  sha256File,
  verifyBundle,
  type BundleKind,
  type ToolBundleManifest,
} from "./tool-bundle.js";

/**
 * Debian 13 (trixie): where programs newer than Debian 12's come from
 * (virtiofsd, erofs-utils 1.8, squashfs-tools 4.6). Its point releases and
 * security updates replace versions in the archive (the old ones leave
 * deb.debian.org), so the suites are pinned, not the versions; the manifest
 * records the exact versions and hashes that were fetched.
 */
export const DEBIAN_13_SUITES = ["trixie", "trixie-updates", "trixie-security"] as const;
const DEBIAN_MIRROR = "http://deb.debian.org/debian";
const DEBIAN_SECURITY_MIRROR = "http://deb.debian.org/debian-security";
/** Debian 12's debian-archive-keyring already holds trixie's archive and release keys. */
const DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg";

/** What to provision: one program, the packages holding it and every library it links, and how to check it runs. */
export interface BundleSpec extends BundleKind {
  readonly suites: readonly string[];
  /** The program's package and the packages holding the libraries it needs (glibc's loader comes with libc6). */
  readonly packages: readonly string[];
  /** The program: its package, its path in that package, and the name it runs as (bin/NAME, argv[0]). */
  readonly program: { readonly package: string; readonly path: string; readonly name: string };
  /** Arguments that print the version, and what that output must look like. */
  readonly versionArgs: readonly string[];
  readonly versionPattern: RegExp;
  /** The error code of this kind's failures, e.g. "EVIRTIOFSD". */
  readonly errorCode: string;
}

/**
 * Fetches a program and its libraries from Debian through a private apt
 * configuration (private-apt.ts: apt verifies the signed index and each
 * .deb), unpacks them with dpkg-deb, keeps the program, its loader and the
 * closure of libraries it needs, and publishes them as one bundle in the
 * cache in a single rename. Returns the bundle directory. When a bundle with
 * exactly these package versions is already there and intact, it is kept.
 */
export async function provisionBundle(spec: BundleSpec, cache: string, progress: (m: string) => void): Promise<string> {
  const keyring = DEBIAN_KEYRING;
  if (!(await stat(keyring).then((s) => s.isFile(), () => false))) {
    throw new A3sError("ETOOL", `${keyring} is missing, so Debian's archive signatures cannot be checked`, {
      subject: keyring,
      hint: `apt-get install debian-archive-keyring   (${DOCTOR_HINT})`,
    });
  }
  const arch = (await runTool(requireTool("dpkg", "dpkg"), ["--print-architecture"])).stdout.trim();
  const root = bundleCacheDir(cache, spec);
  await mkdir(root, { recursive: true });
  const work = await mkdtemp(join(root, ".fetch-"));
  try {
    const sources: AptSuiteSource[] = spec.suites.map((suite) => ({
      uri: suite.endsWith("-security") ? DEBIAN_SECURITY_MIRROR : DEBIAN_MIRROR,
      suite,
      components: ["main"],
      keyring,
    }));
    const apt = await PrivateApt.create(join(work, "apt"), sources, arch);
    progress(`${spec.name}: reading the package lists of ${spec.suites.join(", ")} with a private apt configuration`);
    await apt.update();
    const packages = await apt.resolve(spec.packages);
    const name = bundleName(spec, packages);
    const final = join(root, name);
    const existing = await readManifest(final, spec).catch(() => undefined);
    if (existing && (await verifyBundle(final, existing, spec).then(() => true, () => false))) {
      progress(`${spec.name}: ${name} is already in the cache and intact`);
      return final;
    }

    progress(`${spec.name}: downloading ${packages.map((p) => `${p.name} ${p.version}`).join(", ")}`);
    const { records, owner } = await unpackVerified(apt, packages, join(work, "unpacked"), spec);
    const { staged, manifest } = await stageBundle(spec, arch, join(work, "bundle"), owner, records);
    const version = await programVersion(spec, bundleCommand(staged, manifest, spec.program.name));
    if (!spec.versionPattern.test(version)) {
      throw new A3sError(spec.errorCode, `the fetched ${spec.program.name} printed ${JSON.stringify(version)} for ${spec.versionArgs.join(" ")}`, {
        subject: name,
      });
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
    progress(`${spec.name}: ${version} published in ${final}`);
    return final;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Downloads the packages, checks each .deb's SHA256 against Debian's signed
 * index once more, and unpacks each into a directory of its own under
 * `unpacked`. Returns the manifest's package records and which package
 * each directory holds.
 */
async function unpackVerified(
  apt: PrivateApt,
  packages: Awaited<ReturnType<PrivateApt["resolve"]>>,
  unpacked: string,
  spec: BundleSpec,
): Promise<{ records: ToolBundleManifest["packages"][number][]; owner: Map<string, string> }> {
  const debs = await apt.download(packages);
  const records: ToolBundleManifest["packages"][number][] = [];
  const owner = new Map<string, string>();
  for (const p of packages) {
    const deb = debs.get(p.name) as string;
    const { sha256 } = await sha256File(deb);
    // apt already refused a .deb whose hash differs from the signed
    // index; checking again here makes the manifest's record a fact.
    if (sha256 !== p.sha256) {
      throw new A3sError(spec.errorCode, `${basename(deb)} has SHA256 ${sha256}, but Debian's index lists ${p.sha256}`, { subject: p.filename });
    }
    records.push({ name: p.name, version: p.version, filename: p.filename, sha256 });
    const dest = join(unpacked, p.name);
    await mkdir(dest, { recursive: true });
    await runTool(requireTool("dpkg-deb", "dpkg"), ["-x", deb, dest]);
    owner.set(dest, p.name);
  }
  return { records, owner };
}

/**
 * The bundle as it will sit in the cache, staged in `staged`: the program
 * and the libraries it loads (its own loader among them), read-only, with
 * the manifest that records every file's SHA256 and package.
 */
async function stageBundle(
  spec: BundleSpec,
  arch: string,
  staged: string,
  owner: Map<string, string>,
  records: ToolBundleManifest["packages"][number][],
): Promise<{ staged: string; manifest: ToolBundleManifest }> {
  const unpackedProgram = [...owner.entries()].find(([, name]) => name === spec.program.package)?.[0];
  if (unpackedProgram === undefined) throw new A3sError(spec.errorCode, `${spec.program.package} was not among the packages fetched`, { subject: spec.program.package });
  await mkdir(join(staged, "bin"), { recursive: true });
  await mkdir(join(staged, "lib"));
  const files: { path: string; from: string; package: string }[] = [];
  const program = join(unpackedProgram, spec.program.path);
  const programPath = `bin/${spec.program.name}`;
  files.push({ path: programPath, from: program, package: spec.program.package });
  const closure = await libraryClosure(spec, program, [...owner.keys()].map((d) => join(d, "usr/lib", multiarchOf(spec, arch))));
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
  if (!loader) throw new A3sError(spec.errorCode, `the libc6 package holds no dynamic loader for ${spec.program.name}`, { subject: "libc6" });
  const manifest: ToolBundleManifest = {
    format: 1,
    version: "",
    suites: [...spec.suites],
    fetchedAt: new Date().toISOString(),
    packages: records,
    files: manifestFiles,
    program: programPath,
    loader: `lib/${loader.name}`,
    libraryDir: "lib",
  };
  return { staged, manifest };
}

/** The first line the program prints for its version arguments (some tools print it on stderr, some exit 1). */
async function programVersion(spec: BundleSpec, cmd: ToolCommand): Promise<string> {
  const text = await runToolCommand(cmd, spec.versionArgs).then(
    (r) => r.stdout + r.stderr,
    (e: Error) => e.message,
  );
  return (text.split("\n").find((l) => spec.versionPattern.test(l)) ?? text.split("\n")[0] ?? "").trim();
}

/** The bundle's directory name: the program's package version and a digest of every package version in it. */
function bundleName(spec: BundleSpec, packages: readonly AptPackage[]): string {
  const set = packages.map((p) => `${p.name}=${p.version}\n`).sort().join("");
  const digest = createHash("sha256").update(set).digest("hex").slice(0, 12);
  const version = packages.find((p) => p.name === spec.program.package)?.version ?? "unknown";
  return `${spec.program.package}_${version.replace(/[^A-Za-z0-9.+~-]/g, "_")}+${digest}`;
}

function multiarchOf(spec: BundleSpec, arch: string): string {
  const triplets: Record<string, string> = { amd64: "x86_64-linux-gnu", arm64: "aarch64-linux-gnu", riscv64: "riscv64-linux-gnu" };
  const t = triplets[arch];
  if (!t) throw new A3sError("EARCH", `provisioning ${spec.name} is not supported on ${arch}`, { hint: `install ${spec.program.package} from your distribution` });
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
async function libraryClosure(spec: BundleSpec, program: string, libDirs: readonly string[]): Promise<ClosureLibrary[]> {
  const elf = await readElfFile(program);
  if (!elf?.interpreter) throw new A3sError(spec.errorCode, `the packaged ${spec.program.name} is not a dynamically linked ELF program`, { subject: program });
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
  if (!loader) throw new A3sError(spec.errorCode, `no package provides ${spec.program.name}'s loader ${elf.interpreter}`, { subject: elf.interpreter });
  found.set(loaderName, { name: loaderName, ...loader, isLoader: true });
  const queue = [...elf.needed];
  while (queue.length) {
    const name = queue.shift() as string;
    if (found.has(name)) continue;
    const lib = await locate(name);
    if (!lib) {
      throw new A3sError(spec.errorCode, `${spec.program.name} needs ${name}, which none of ${spec.packages.join(", ")} provides`, {
        subject: name,
        hint: `the package's dependencies changed: add the package that holds it to the ${spec.name} bundle's packages`,
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
