import { realpath } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, resolve, sep } from "node:path";

/**
 * The host's own directories. An output replaces whatever is at its path, so
 * a slip of the keyboard (`-o dir:/etc`, `-o tar:/usr`) would otherwise cost
 * the host its system; no flag makes these writable, `--force` included.
 */
const SYSTEM_DIRECTORIES = new Set([
  "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/lost+found", "/media", "/mnt",
  "/opt", "/proc", "/root", "/run", "/sbin", "/snap", "/srv", "/sys", "/tmp", "/usr", "/var",
  "/usr/bin", "/usr/include", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libexec", "/usr/libx32", "/usr/local",
  "/usr/sbin", "/usr/share", "/usr/src", "/usr/local/bin", "/usr/local/lib", "/usr/local/sbin", "/usr/local/share",
  "/var/backups", "/var/cache", "/var/lib", "/var/local", "/var/lock", "/var/log", "/var/mail", "/var/opt",
  "/var/run", "/var/spool", "/var/tmp",
]);

/**
 * Directories nothing a build writes belongs anywhere inside: the kernel's
 * filesystems, and the ones holding the host's configuration, programs and
 * libraries (`-o tar:/etc/passwd` would replace the host's passwd). Data
 * directories (/var, /srv, /opt, /home, /usr/local, /usr/share...) may
 * hold outputs, though not be one.
 */
const NOTHING_INSIDE = [
  "/proc", "/sys", "/dev", "/etc", "/boot", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
  "/usr/bin", "/usr/sbin", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libx32", "/usr/libexec", "/usr/include",
];

/**
 * Why `path` (absolute, its parent's symlinks resolved) may never be an
 * output, or undefined when it may: `/`, a system directory, anything inside
 * the system directories listed above, the current directory or one of its ancestors, the
 * user's home or one of its ancestors. Replacing the current directory or
 * home (`-o dir:.`, `-o dir:..`, `-o dir:~`) would delete the very project or
 * home the user is working in.
 */
export async function protectedPathReason(path: string): Promise<string | undefined> {
  if (path === "/") return "it is the root directory";
  if (SYSTEM_DIRECTORIES.has(path)) return "it is a system directory";
  for (const dir of NOTHING_INSIDE) {
    if (path.startsWith(dir + sep)) return `it is inside ${dir}, ${["/proc", "/sys", "/dev"].includes(dir) ? "a kernel filesystem" : "a system directory"}`;
  }
  const cwd = await realpath(process.cwd()).catch(() => resolve(process.cwd()));
  if (path === cwd) return "it is the current directory";
  if (isAncestor(path, cwd)) return "it holds the current directory";
  const home = process.env.HOME || homedir();
  if (home) {
    const realHome = await realpath(home).catch(() => resolve(home));
    if (path === realHome) return "it is your home directory";
    if (isAncestor(path, realHome)) return "it holds your home directory";
  }
  return undefined;
}

/** Whether `dir` is a proper ancestor of `path` (both absolute and normalised). */
function isAncestor(dir: string, path: string): boolean {
  for (let p = dirname(path); ; p = dirname(p)) {
    if (p === dir) return true;
    if (p === dirname(p)) return false;
  }
}
