import type { EntryKind } from "../tree/index.js";
import type { PasswordField } from "./accounts.js";
import type { BinaryReport } from "./binary-check.js";
import type { Finding, Severity } from "./findings.js";
import type { LayoutReport } from "./layout-check.js";
import type { VerityReport } from "./verity-check.js";

/**
 * Overall grade, from the most severe finding: "fail" (critical), "risky"
 * (high), "review" (medium), "ok" (low only), "clean" (info only, or none).
 */
export type AuditGrade = "fail" | "risky" | "review" | "ok" | "clean";

/**
 * What `a3s-rootfs inspect` reports about a rootfs. `inspect --json` prints
 * this object; the keys documented in docs/inspect.md are stable. Every list
 * of paths names each inode once, by its first name in walk order (sorted),
 * so hardlinked names are not counted twice.
 */
export interface AuditReport {
  /** What was inspected, as given. */
  readonly target: string;
  /** How it was read: dir, tar, cpio, ext4, erofs, squashfs, or "source" (oci:, docker://...). */
  readonly format: string;
  /** Bytes of regular-file content, each inode once. */
  readonly bytes: number;
  /** Names in the tree, the root included. */
  readonly entries: number;
  readonly byKind: Record<EntryKind, number>;
  /** The largest regular files, largest first. */
  readonly largest: readonly { readonly path: string; readonly bytes: number }[];
  /** Programs the kernel can exec: ELF executables (not shared libraries) and "#!" scripts with an x bit. */
  readonly executables: readonly string[];
  readonly executableCount: number;
  /** The executables that are "#!" scripts. */
  readonly scripts: readonly string[];
  /** ELF shared libraries with an x bit (not counted as executables). */
  readonly sharedLibraries: number;
  readonly setuid: readonly string[];
  readonly setgid: readonly string[];
  /** Files with a security.capability xattr, with the capabilities in getcap's notation. */
  readonly capabilities: readonly { readonly path: string; readonly capabilities: string }[];
  /** World-writable files and fifos, and world-writable directories without the sticky bit. */
  readonly worldWritable: readonly string[];
  readonly devices: readonly { readonly path: string; readonly kind: "char" | "block"; readonly major: number; readonly minor: number }[];
  /** Names of shells (and BusyBox binaries with a shell applet) that lead to an executable file. */
  readonly shells: readonly string[];
  /** Package managers present, by name (apt, dpkg, apk, rpm, yum, dnf, pip...). */
  readonly packageManagers: readonly string[];
  /** The init the kernel would run (/sbin/init, else /init); null when there is none. */
  readonly init: BinaryReport | null;
  /** The agent at the configured path (guest.conf `agent=`, else the default); null when it is missing. */
  readonly agent: BinaryReport | null;
  /** The configured agent path, whether or not something is there. */
  readonly agentPath: string;
  /** True when the rootfs has an A3S guest config (/etc/a3s/guest.conf). */
  readonly a3sGuest: boolean;
  readonly layout: LayoutReport;
  readonly privateKeys: readonly { readonly path: string; readonly label: string }[];
  readonly passwordFields: readonly PasswordField[];
  /** Every finding, most severe first. */
  readonly findings: readonly Finding[];
  readonly severityCounts: Record<Severity, number>;
  readonly grade: AuditGrade;
  /** One line: the grade, what drove it, and the attack-surface summary. */
  readonly verdict: string;
  /** What the reader or the audit could not see exactly (e.g. xattrs on a non-root squashfs read). */
  readonly notes: readonly string[];
  /** For erofs, squashfs and ext4 images: the dm-verity hash tree, if any (verity-check.ts). */
  readonly verity?: VerityReport;
}
