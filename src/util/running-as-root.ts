/**
 * Whether this process runs as root, and so may chown, mknod and set
 * security.* xattrs: what decides whether a directory on disk can hold a
 * tree exactly, and how images are read and written.
 */
export function runningAsRoot(): boolean {
  return process.getuid?.() === 0;
}
