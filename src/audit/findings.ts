/**
 * What `inspect` can find, and how bad each thing is. The codes and their
 * severities are a contract: scripts match on them, and docs/inspect.md
 * documents each one. Adding a code means adding it here and there.
 */

export const SEVERITIES = ["critical", "high", "medium", "low", "info"] as const;
export type Severity = (typeof SEVERITIES)[number];

export interface Finding {
  readonly severity: Severity;
  readonly code: FindingCode;
  /** The entry the finding is about (inside the rootfs), or "/" for the rootfs as a whole. */
  readonly path: string;
  /** One line for people. */
  readonly message: string;
}

/** Every finding code with its severity. */
export const FINDING_SEVERITY = {
  // The rootfs cannot start its workload, or it hands out a secret.
  "private-key": "critical",
  "empty-password": "critical",
  "init-missing": "critical",
  "init-not-executable": "critical",
  "agent-missing": "critical",
  "agent-not-executable": "critical",
  "agent-hidden-by-mount": "critical",
  "interpreter-missing": "critical",
  "library-missing": "critical",
  // A way to gain privileges or to change what others run.
  "setuid-file": "high",
  "file-capability": "high",
  "world-writable-file": "high",
  "world-writable-directory": "high",
  "password-hash": "high",
  "guest-directory-missing": "high",
  // Attack surface that a minimal agent rootfs does not need.
  "setgid-file": "medium",
  "shell-present": "medium",
  "package-manager-present": "medium",
  "device-node": "medium",
  "init-dynamic": "medium",
  // Works, but is not what the A3S guest contract expects.
  "agent-dynamic": "low",
  "etc-file-missing": "low",
  "malformed-elf": "low",
  // Context for reading the rest of the report.
  "not-an-a3s-guest": "info",
  "standard-device-node": "info",
  "xattrs-not-read": "info",
} as const satisfies Record<string, Severity>;

export type FindingCode = keyof typeof FINDING_SEVERITY;

export function finding(code: FindingCode, path: string, message: string): Finding {
  return { severity: FINDING_SEVERITY[code], code, path, message };
}

/** Most severe first, then by code and path, so a report reads the same every time. */
export function sortFindings(findings: readonly Finding[]): Finding[] {
  const rank = (s: Severity): number => SEVERITIES.indexOf(s);
  return [...findings].sort(
    (a, b) =>
      rank(a.severity) - rank(b.severity) ||
      (a.code < b.code ? -1 : a.code > b.code ? 1 : 0) ||
      (a.path < b.path ? -1 : a.path > b.path ? 1 : 0),
  );
}

export function countBySeverity(findings: readonly Finding[]): Record<Severity, number> {
  const counts = { critical: 0, high: 0, medium: 0, low: 0, info: 0 };
  for (const f of findings) counts[f.severity]++;
  return counts;
}
