import { posix } from "node:path";
import type { FileInode, RootfsTree } from "../tree/index.js";
import { readElfContent, type ElfInfo } from "../formats/elf/index.js";
import { lookupFile, readTreeText, safeResolve } from "./tree-files.js";

/**
 * Finds, inside a rootfs, the shared libraries a dynamic ELF program needs,
 * the way the dynamic loader of that rootfs would: glibc's ld.so or musl's.
 * A program whose interpreter or one of whose libraries is missing fails at
 * exec with a bare ENOENT, inside the VM, far from the cause; this finds it
 * at build or inspect time instead.
 *
 * Search order (glibc, ld.so(8)): DT_RPATH when there is no DT_RUNPATH,
 * then DT_RUNPATH, then the directories of /etc/ld.so.conf and the files it
 * includes (ld.so.cache is built from those), then the multiarch and
 * default directories. musl: DT_RPATH/DT_RUNPATH, then the lines of
 * /etc/ld-musl-ARCH.path, else /lib:/usr/local/lib:/usr/lib. Symlinks are
 * followed inside the tree; a candidate of the wrong ELF class or machine is
 * skipped, as the loaders skip it. Libraries of libraries are followed too.
 */

export interface ResolvedLibrary {
  /** The DT_NEEDED name, e.g. "libc.so.6". */
  readonly name: string;
  /** Where it was found (the path the loader would open), or null. */
  readonly path: string | null;
  /** The object that needs it: the program or another library. */
  readonly neededBy: string;
}

export interface DependencyReport {
  readonly interpreterPresent: boolean;
  readonly libraries: readonly ResolvedLibrary[];
  /** Needed names found nowhere in the search path, each once. */
  readonly missing: readonly string[];
}

/** At most this many libraries are followed for one program (a hostile tree could chain many). */
const MAX_LIBRARIES = 1024;
/** ld.so.conf include depth and file count bounds. */
const MAX_CONF_DEPTH = 8;
const MAX_CONF_FILES = 256;

/** Debian multiarch directory names by ELF machine and class. */
function multiarchTriplets(machine: number, bits: 32 | 64): string[] {
  switch (machine) {
    case 62:
      return bits === 64 ? ["x86_64-linux-gnu"] : ["x86_64-linux-gnux32"];
    case 3:
      return ["i386-linux-gnu"];
    case 183:
      return ["aarch64-linux-gnu"];
    case 40:
      return ["arm-linux-gnueabihf", "arm-linux-gnueabi"];
    case 243:
      return ["riscv64-linux-gnu"];
    case 21:
      return ["powerpc64le-linux-gnu", "powerpc64-linux-gnu"];
    case 22:
      return ["s390x-linux-gnu"];
    default:
      return [];
  }
}

/**
 * musl's loader satisfies these names with itself: it is the C library, and
 * libpthread, librt, libm, libdl, libutil and libxnet are merged into it.
 */
const MUSL_BUILTIN = /^lib(c|pthread|rt|m|dl|util|xnet)\./;

export class LibraryResolver {
  private readonly elfCache = new Map<FileInode, Promise<ElfInfo | undefined>>();
  private ldSoConfDirs: Promise<string[]> | undefined;

  constructor(private readonly tree: RootfsTree) {}

  /** Checks a dynamic program at `programPath` (its resolved path) with headers `elf`. */
  async resolve(programPath: string, elf: ElfInfo): Promise<DependencyReport> {
    const interpreter = elf.interpreter;
    const interpreterPresent = interpreter === undefined ? true : lookupFile(this.tree, interpreter) !== undefined;
    const musl = interpreter !== undefined && /(^|\/)ld-musl-[^/]*$/.test(interpreter);
    const systemDirs = musl ? await this.muslDirs(interpreter) : [...(await this.ldSoConf()), ...defaultDirs(elf)];

    const libraries: ResolvedLibrary[] = [];
    const missing: string[] = [];
    const seen = new Set<string>();
    const queue: { path: string; elf: ElfInfo }[] = [{ path: programPath, elf }];
    while (queue.length > 0 && libraries.length < MAX_LIBRARIES) {
      const object = queue.shift() as { path: string; elf: ElfInfo };
      const origin = posix.dirname(object.path);
      const own = [
        ...(object.elf.runpath === undefined ? (object.elf.rpath ?? []) : []),
        ...(object.elf.runpath ?? []),
      ].map((d) => expandOrigin(d, origin, elf.bits));
      for (const name of object.elf.needed) {
        if (seen.has(name)) continue;
        seen.add(name);
        if (musl && MUSL_BUILTIN.test(name)) {
          libraries.push({ name, path: interpreter ?? null, neededBy: object.path });
          continue;
        }
        const found = await this.find(name, [...own, ...systemDirs], elf);
        libraries.push({ name, path: found?.path ?? null, neededBy: object.path });
        if (found) queue.push(found);
        else missing.push(name);
      }
    }
    return { interpreterPresent, libraries, missing };
  }

  /** The first candidate for `name` that is a regular ELF file of the program's class and machine. */
  private async find(name: string, dirs: readonly string[], program: ElfInfo): Promise<{ path: string; elf: ElfInfo } | undefined> {
    const candidates = name.includes("/") ? [name] : dirs.map((d) => posix.join(d, name));
    for (const candidate of candidates) {
      if (!candidate.startsWith("/")) continue;
      const file = lookupFile(this.tree, candidate);
      if (!file) continue;
      const elf = await this.elfOf(file.inode, candidate);
      if (elf && elf.bits === program.bits && elf.machine === program.machine) return { path: candidate, elf };
    }
    return undefined;
  }

  private elfOf(inode: FileInode, subject: string): Promise<ElfInfo | undefined> {
    let p = this.elfCache.get(inode);
    if (!p) {
      p = readElfContent(inode.content, subject).catch(() => undefined);
      this.elfCache.set(inode, p);
    }
    return p;
  }

  private ldSoConf(): Promise<string[]> {
    this.ldSoConfDirs ??= this.readLdSoConf();
    return this.ldSoConfDirs;
  }

  /** Directories of /etc/ld.so.conf, following `include` lines (globs in the last component). */
  private async readLdSoConf(): Promise<string[]> {
    const dirs: string[] = [];
    let files = 0;
    const read = async (path: string, depth: number): Promise<void> => {
      if (depth > MAX_CONF_DEPTH || ++files > MAX_CONF_FILES) return;
      const text = await readTreeText(this.tree, path);
      if (text === undefined) return;
      for (const raw of text.split("\n")) {
        const line = raw.replace(/#.*/, "").trim();
        if (line === "") continue;
        const include = /^include\s+(.+)$/.exec(line);
        if (include) {
          for (const pattern of (include[1] as string).split(/\s+/)) {
            const abs = pattern.startsWith("/") ? pattern : posix.join(posix.dirname(path), pattern);
            for (const match of this.glob(abs)) await read(match, depth + 1);
          }
          continue;
        }
        if (line.startsWith("hwcap ")) continue;
        for (const dir of line.split(/[\s,:]+/)) if (dir.startsWith("/")) dirs.push(dir.replace(/=.*$/, ""));
      }
    };
    await read("/etc/ld.so.conf", 0);
    return dirs;
  }

  /** Paths in the tree matching a pattern with "*" and "?" in its last component, sorted. */
  private glob(pattern: string): string[] {
    const dir = posix.dirname(pattern);
    const base = posix.basename(pattern);
    if (!/[*?]/.test(base)) return [pattern];
    const node = safeResolve(this.tree, dir)?.inode;
    if (node?.kind !== "directory") return [];
    const re = new RegExp("^" + base.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$");
    return [...node.children.keys()].filter((n) => re.test(n)).sort().map((n) => posix.join(dir, n));
  }

  private async muslDirs(interpreter: string): Promise<string[]> {
    const arch = /ld-musl-([^/.]+)\.so/.exec(interpreter)?.[1];
    const text = arch === undefined ? undefined : await readTreeText(this.tree, `/etc/ld-musl-${arch}.path`);
    if (text === undefined) return ["/lib", "/usr/local/lib", "/usr/lib"];
    return text.split(/[\n:]/).map((d) => d.trim()).filter((d) => d.startsWith("/"));
  }
}

function defaultDirs(elf: ElfInfo): string[] {
  const multiarch = multiarchTriplets(elf.machine, elf.bits).flatMap((t) => [`/lib/${t}`, `/usr/lib/${t}`]);
  const lib64 = elf.bits === 64 ? ["/lib64", "/usr/lib64"] : ["/lib32", "/usr/lib32"];
  return [...multiarch, ...lib64, "/lib", "/usr/lib", "/usr/local/lib"];
}

/** $ORIGIN / ${ORIGIN} is the directory of the object; $LIB is lib64 or lib. */
function expandOrigin(dir: string, origin: string, bits: 32 | 64): string {
  return dir
    .replace(/\$\{ORIGIN\}|\$ORIGIN/g, origin)
    .replace(/\$\{LIB\}|\$LIB/g, bits === 64 ? "lib64" : "lib");
}
