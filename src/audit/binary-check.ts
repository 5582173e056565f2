import { withContentBytes, type RootfsTree } from "../tree/index.js";
import { classifyExecutable, SHEBANG_MAX_BYTES } from "./executables.js";
import type { LibraryResolver, ResolvedLibrary } from "./library-resolver.js";
import { lookupFile, safeResolve } from "./tree-files.js";

/** How the init or the agent of a rootfs would start. */
export interface BinaryReport {
  /** The path looked at (e.g. "/sbin/init", or the configured agent path). */
  readonly path: string;
  /** Where it leads after symlinks. */
  readonly resolvedPath: string;
  /** "elf" program, "script" with a #! line, or "other" (exec would fail with ENOEXEC). */
  readonly kind: "elf" | "script" | "other";
  /** An execute bit is set (exec fails with EACCES otherwise). */
  readonly executable: boolean;
  /** Needs nothing else from the rootfs to start: an ELF program with no program interpreter. */
  readonly static: boolean;
  /** The ELF program interpreter, or a script's #! interpreter; null for a static program. */
  readonly interpreter: string | null;
  readonly interpreterPresent: boolean;
  /** The libraries it needs, transitively, with where each was found (ELF only). */
  readonly libraries: readonly ResolvedLibrary[];
  /** Needed libraries found nowhere in the tree's search path. */
  readonly missingLibraries: readonly string[];
  /** Set when the ELF headers could not be read. */
  readonly malformed?: string;
}

/** The kernel follows at most this many "#!" interpreters for one exec (BINPRM_MAX_RECURSION). */
const MAX_INTERPRETER_DEPTH = 4;

/** Checks the program at `path`; null when nothing (or no regular file) is there. */
export async function checkBinary(
  tree: RootfsTree,
  path: string,
  resolver: LibraryResolver,
  depth = 0,
): Promise<BinaryReport | null> {
  const file = lookupFile(tree, path);
  if (!file || depth > MAX_INTERPRETER_DEPTH) return null;
  const { inode } = file;
  const executable = (inode.mode & 0o111) !== 0;
  const cls = await withContentBytes(inode.content, path, async (src) =>
    classifyExecutable(src, await src.read(0, SHEBANG_MAX_BYTES), path),
  );
  const base = { path, resolvedPath: file.path, executable };
  if (cls.kind === "program" || cls.kind === "library") {
    const deps = cls.elf.isStatic ? undefined : await resolver.resolve(file.path, cls.elf);
    return {
      ...base,
      kind: "elf",
      static: cls.elf.isStatic,
      interpreter: cls.elf.interpreter ?? null,
      interpreterPresent: deps?.interpreterPresent ?? true,
      libraries: deps?.libraries ?? [],
      missingLibraries: deps?.missing ?? [],
    };
  }
  if (cls.kind === "script") {
    // The kernel runs the interpreter instead; if that is a dynamic ELF
    // program, its libraries have to be there too.
    const interp = lookupFile(tree, cls.interpreter);
    const inner = interp ? await checkBinary(tree, cls.interpreter, resolver, depth + 1) : null;
    return {
      ...base,
      kind: "script",
      static: false,
      interpreter: cls.interpreter,
      interpreterPresent: inner !== null && inner.kind !== "other" && inner.executable,
      libraries: inner?.libraries ?? [],
      missingLibraries: inner?.missingLibraries ?? [],
    };
  }
  return {
    ...base,
    kind: "other",
    static: false,
    interpreter: null,
    interpreterPresent: false,
    libraries: [],
    missingLibraries: [],
    ...(cls.kind === "malformed-elf" ? { malformed: cls.reason } : {}),
  };
}

/** The init the kernel would run: /sbin/init for a disk root, /init for an initramfs; the first present. */
export function initPath(tree: RootfsTree): string | undefined {
  for (const p of ["/sbin/init", "/init"]) if (safeResolve(tree, p)?.inode.kind === "file") return p;
  return undefined;
}
