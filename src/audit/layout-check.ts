import { DEFAULT_LAYOUT, essentialFiles, layoutDirectories } from "../layout/index.js";
import type { RootfsTree } from "../tree/index.js";
import type { GuestFacts } from "./guest-facts.js";
import { safeResolve } from "./tree-files.js";

export interface LayoutReport {
  /** Directories of the A3S guest contract (mount points and the agent's directory). */
  readonly guestDirectories: { readonly present: readonly string[]; readonly missing: readonly string[] };
  /** The /etc files a static agent and its libc read (passwd, group, hosts...). */
  readonly etcFiles: { readonly present: readonly string[]; readonly missing: readonly string[] };
  /** The top-level directories of the FHS, for context: a minimal rootfs lacks most by design. */
  readonly fhsDirectories: { readonly present: readonly string[]; readonly missing: readonly string[] };
}

const FHS_DIRECTORIES = [
  "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/media", "/mnt", "/opt", "/proc", "/root", "/run",
  "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var",
];

/**
 * Which parts of the guest contract a rootfs has. A directory counts when
 * its path leads to a directory (through symlinks, as /var/run -> /run
 * does); on a read-only root a missing mount point cannot be created at
 * boot, so init's mount fails. An /etc file counts when its name exists,
 * even as a dangling symlink (resolv.conf often points into /run).
 */
export function checkLayout(tree: RootfsTree, guest: GuestFacts): LayoutReport {
  // The image's own agent path, not checked as a build would check it: an
  // audit reports what is there (mount-shadow.ts flags an agent a mount hides).
  const layout = { ...DEFAULT_LAYOUT, agentPath: guest.agentPath };
  const shares = guest.sharePaths ?? [DEFAULT_LAYOUT.workspacePath, DEFAULT_LAYOUT.skillsPath];
  const contract = layoutDirectories(layout)
    .map((d) => d.path)
    .filter((p) => p !== layout.workspacePath && p !== layout.skillsPath);
  const guestDirs = [...new Set([...contract, ...shares])].sort();
  const isDir = (p: string): boolean => safeResolve(tree, p)?.inode.kind === "directory";
  const exists = (p: string): boolean => safeResolve(tree, p, false) !== undefined;
  const split = (paths: readonly string[], test: (p: string) => boolean): { present: string[]; missing: string[] } => ({
    present: paths.filter(test),
    missing: paths.filter((p) => !test(p)),
  });
  return {
    guestDirectories: split(guestDirs, isDir),
    etcFiles: split(essentialFiles(layout).map((f) => f.path).sort(), exists),
    fhsDirectories: split(FHS_DIRECTORIES, isDir),
  };
}
