import { fstatSync, type BigIntStats } from "node:fs";

/**
 * Which file, in which state: the inode (device and number), its size, and
 * its modification and change times in nanoseconds. Two opens that report
 * the same identity read the same bytes, unless someone rewrote the file and
 * then reset both its mtime and its ctime, which ordinary users cannot do
 * (ctime is set by the kernel on every write, chmod, link, unlink or
 * utimes). A rename over the path gives another inode; a write in place
 * moves the ctime.
 *
 * The content store uses it to bind what it verified to what is read later:
 * a blob is hashed once, its identity taken from the same open descriptor,
 * and every later open of that blob must find the same identity (see
 * docs/security.md, "A verified store").
 */
export interface FileIdentity {
  readonly dev: bigint;
  readonly ino: bigint;
  readonly size: number;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
}

export function identityOf(st: BigIntStats): FileIdentity {
  return { dev: st.dev, ino: st.ino, size: Number(st.size), mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
}

/** The identity of an open descriptor. */
export function identityOfFd(fd: number): FileIdentity {
  return identityOf(fstatSync(fd, { bigint: true }));
}

export function sameIdentity(a: FileIdentity, b: FileIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}

/** What differs between two identities, for a message ("inode", "size", "modification time", "change time"). */
export function identityDifference(expected: FileIdentity, found: FileIdentity): string {
  if (expected.dev !== found.dev || expected.ino !== found.ino) return "it is another file now (replaced or renamed over)";
  if (expected.size !== found.size) return `its size changed from ${expected.size} to ${found.size} bytes`;
  if (expected.mtimeNs !== found.mtimeNs) return "it was modified";
  return "its inode was changed (written, or its times or links changed)";
}

/** The identity as one line of text, for a record on disk: equal texts, same identity. */
export function identityText(id: FileIdentity): string {
  return `${id.dev}:${id.ino}:${id.size}:${id.mtimeNs}:${id.ctimeNs}`;
}
