/**
 * Shells in a rootfs. A shell is what turns one compromised process into an
 * interactive foothold (`system()`, `popen()`, a reverse shell one-liner all
 * start /bin/sh); the A3S scratch rootfs deliberately has none.
 */

/** Names of command interpreters that are shells. */
export const SHELL_NAMES: ReadonlySet<string> = new Set([
  "sh", "bash", "rbash", "dash", "ash", "hush", "msh", "zsh", "ksh", "ksh93", "mksh", "pdksh", "oksh", "lksh",
  "yash", "csh", "tcsh", "fish", "elvish", "nu", "xonsh",
]);

/** BusyBox applets that are shells. */
const BUSYBOX_SHELL_APPLETS = ["ash", "hush", "sh", "bash"];

/** BusyBox binaries are a few MiB; a bigger file named busybox is read only this far. */
export const BUSYBOX_SCAN_MAX_BYTES = 32 * 1024 * 1024;

const APPLET_NAME = /^[a-z0-9[\]._+-]{1,40}$/;

/**
 * The shell applets compiled into a BusyBox binary, from its applet name
 * table: one NUL-separated, sorted list of every applet ("[", "[[",
 * "acpid", ..., ending with an empty string). When the table does not start
 * with "[" (a build without test), each shell name is accepted only where it
 * sits between two applet-like names in sorted order, so that a stray "sh"
 * string elsewhere in the binary does not count.
 */
export function busyboxShellApplets(binary: Buffer): string[] {
  const start = binary.indexOf("\0[\0[[\0", 0, "latin1");
  if (start >= 0) {
    const applets = new Set<string>();
    let at = start + 1;
    while (at < binary.length && applets.size < 4096) {
      const end = binary.indexOf(0, at);
      if (end <= at) break;
      const name = binary.toString("latin1", at, end);
      if (!APPLET_NAME.test(name)) break;
      applets.add(name);
      at = end + 1;
    }
    return BUSYBOX_SHELL_APPLETS.filter((a) => applets.has(a));
  }
  return BUSYBOX_SHELL_APPLETS.filter((name) => hasSortedNeighbours(binary, name));
}

function hasSortedNeighbours(binary: Buffer, name: string): boolean {
  const needle = Buffer.from(`\0${name}\0`, "latin1");
  for (let at = binary.indexOf(needle); at >= 0; at = binary.indexOf(needle, at + 1)) {
    const prevStart = binary.lastIndexOf(0, at - 1) + 1;
    const prev = binary.toString("latin1", prevStart, at);
    const nextStart = at + needle.length;
    const nextEnd = binary.indexOf(0, nextStart);
    const next = nextEnd < 0 ? "" : binary.toString("latin1", nextStart, nextEnd);
    if (APPLET_NAME.test(prev) && APPLET_NAME.test(next) && prev < name && name < next) return true;
  }
  return false;
}
