import type { EntryKind } from "../tree/index.js";

/** "1.5 MiB"-style sizes for people. */
export function humanBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

const TYPE_CHAR: Record<EntryKind, string> = {
  file: "-",
  hardlink: "h",
  directory: "d",
  symlink: "l",
  char: "c",
  block: "b",
  fifo: "p",
};

/** ls -l style mode string, setuid/setgid/sticky included. */
export function modeString(kind: EntryKind, mode: number): string {
  const rwx = (bits: number, special: boolean, specialChar: string): string =>
    (bits & 4 ? "r" : "-") +
    (bits & 2 ? "w" : "-") +
    (special ? (bits & 1 ? specialChar : specialChar.toUpperCase()) : bits & 1 ? "x" : "-");
  return (
    TYPE_CHAR[kind] +
    rwx((mode >> 6) & 7, (mode & 0o4000) !== 0, "s") +
    rwx((mode >> 3) & 7, (mode & 0o2000) !== 0, "s") +
    rwx(mode & 7, (mode & 0o1000) !== 0, "t")
  );
}
