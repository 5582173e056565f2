import { A3sError } from "../errors.js";

/**
 * Paths inside a rootfs are handled as lists of components. Every path that
 * enters the tree goes through `splitRootfsPath`, so no component is ever
 * empty, ".", "..", or contains "/" or NUL.
 *
 * ".." is resolved lexically here (as tar and cpio names are); a ".." that
 * would climb above the root is refused rather than clamped, because a name
 * like "../../etc/passwd" in an input is an attack, not a typo.
 */
export function splitRootfsPath(path: string): string[] {
  if (path.includes("\0")) {
    throw new A3sError("EPATH", `path contains a NUL byte: ${JSON.stringify(path)}`, { subject: path });
  }
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length === 0) {
        throw new A3sError("EPATH", `path climbs above the rootfs root: ${path}`, { subject: path });
      }
      out.pop();
      continue;
    }
    out.push(part);
  }
  return out;
}

/** The canonical form of a rootfs path: "/" or "/a/b". */
export function normaliseRootfsPath(path: string): string {
  return joinRootfsPath(splitRootfsPath(path));
}

export function joinRootfsPath(parts: readonly string[]): string {
  return "/" + parts.join("/");
}
