import { posix } from "node:path";
import {
  contentSize,
  readContentPrefixInto,
  withContentBytes,
  type EntryKind,
  type FileInode,
  type Inode,
  type RootfsTree,
  type TreeEntry,
} from "../tree/index.js";
import { forEachLimit } from "../util/concurrency.js";
import { passwordProblems, type PasswordField } from "./accounts.js";
import type { AuditGrade, AuditReport } from "./audit-report.js";
import { checkBinary, initPath, type BinaryReport } from "./binary-check.js";
import { decodeFileCapabilities } from "./capabilities.js";
import { classifyExecutable, SHEBANG_MAX_BYTES, type ExecutableClass } from "./executables.js";
import { countBySeverity, finding, sortFindings, type Finding, type FindingCode, type Severity } from "./findings.js";
import { readGuestFacts, type GuestFacts } from "./guest-facts.js";
import { checkLayout } from "./layout-check.js";
import { LibraryResolver } from "./library-resolver.js";
import { mountShadow } from "./mount-shadow.js";
import { packageManagerFor } from "./package-managers.js";
import { findPrivateKey, KEY_SCAN_MAX_BYTES, KEY_SCAN_MIN_BYTES } from "./private-keys.js";
import { BUSYBOX_SCAN_MAX_BYTES, busyboxShellApplets, SHELL_NAMES } from "./shells.js";
import { safeResolve, readTreeText } from "./tree-files.js";

export interface AuditOptions {
  /** What was inspected, for the report (default "rootfs"). */
  readonly target?: string;
  /** How it was read (default "tree"). */
  readonly format?: string;
  /** What the reader could not see exactly; copied into the report's notes. */
  readonly notes?: readonly string[];
  /** False when the reader could not read xattrs, so file capabilities may be missing. */
  readonly xattrsRead?: boolean;
  /** Files read at once (default 16). */
  readonly concurrency?: number;
  /** How many of the largest files to list (default 10). */
  readonly largest?: number;
}

/** The key scan's read buffer, shared: see scanFile. */
const keyScanBuffer = Buffer.alloc(KEY_SCAN_MAX_BYTES);

/**
 * Character devices that give no access to hardware or kernel memory: null,
 * zero, full, random, urandom (1:3, 1:5, 1:7, 1:8, 1:9), tty, console, ptmx
 * (5:0, 5:1, 5:2). An initramfs needs /dev/console before devtmpfs is
 * mounted, which is why the cpio output adds it and /dev/null.
 */
const STANDARD_CHAR_DEVICES = new Set(["1:3", "1:5", "1:7", "1:8", "1:9", "5:0", "5:1", "5:2"]);

/** A name whose directory is a bin or sbin directory. */
const IN_BIN_DIRECTORY = /\/s?bin\/[^/]+$/;

/** What the content scan learnt about one regular file. */
interface FileScan {
  readonly exec?: ExecutableClass;
  readonly privateKey?: string;
  readonly error?: string;
}

/** Adds a finding; each step of the audit reports through one. */
type AddFinding = (code: FindingCode, path: string, message: string) => void;

/** Counts and names from the walk itself, before anything is read. */
interface Totals {
  readonly byKind: Record<EntryKind, number>;
  /** Every name of each inode, first name first. */
  readonly namesOf: ReadonlyMap<Inode, string[]>;
  /** Regular files by their first name. */
  readonly files: readonly { path: string; inode: FileInode }[];
  readonly bytes: number;
  readonly largest: AuditReport["largest"];
}

/**
 * Audits a rootfs tree: size, attack surface (executables, setuid/setgid,
 * capabilities, world-writable entries, devices, shells, package managers),
 * whether its init and agent can start, the guest layout, and secrets left
 * in it. Reads are bounded (see tree/content-bytes.ts): an ELF's headers, a
 * script's first line, small files for the key scan, and BusyBox binaries
 * for their applet table; nothing is hashed.
 *
 * Each step below is one part of the report, in the order a reader checks
 * them: what is there, who may do what, what is in the files, what can run
 * a shell or install software, whether the guest can start, its layout, its
 * accounts, and last the verdict over every finding.
 */
export async function auditTree(tree: RootfsTree, opts: AuditOptions = {}): Promise<AuditReport> {
  const entries = tree.entries();
  const findings: Finding[] = [];
  const add: AddFinding = (code, path, message) => void findings.push(finding(code, path, message));

  const totals = countEntries(entries, opts.largest ?? 10);
  const permissions = permissionFindings(entries, totals.namesOf, add);
  if (opts.xattrsRead === false) {
    add("xattrs-not-read", "/", "extended attributes could not be read from this target, so file capabilities are not reported");
  }
  const content = await scanContents(totals.files, opts.concurrency ?? 16, add);
  const tools = await findShellsAndManagers(tree, entries, totals.namesOf, content.scans, add);
  const startup = await checkInitAndAgent(tree, add);
  const layout = layoutFindings(tree, startup.guest, add);
  const passwordFields = await accountFindings(tree, add);

  const sorted = sortFindings(findings);
  const severityCounts = countBySeverity(sorted);
  const grade = gradeOf(severityCounts);
  const verdict = verdictLine(grade, sorted, {
    executables: content.executables.length,
    setuid: permissions.setuid.length,
    setgid: permissions.setgid.length,
    shells: tools.shells,
    packageManagers: tools.packageManagers,
  });
  return {
    target: opts.target ?? "rootfs",
    format: opts.format ?? "tree",
    bytes: totals.bytes,
    entries: entries.length,
    byKind: totals.byKind,
    largest: totals.largest,
    executables: content.executables,
    executableCount: content.executables.length,
    scripts: content.scripts,
    sharedLibraries: content.sharedLibraries,
    setuid: permissions.setuid,
    setgid: permissions.setgid,
    capabilities: permissions.capabilities,
    worldWritable: permissions.worldWritable,
    devices: permissions.devices,
    shells: tools.shells,
    packageManagers: tools.packageManagers,
    init: startup.init,
    agent: startup.agent,
    agentPath: startup.guest.agentPath,
    a3sGuest: startup.guest.configured,
    layout,
    privateKeys: content.privateKeys,
    passwordFields,
    findings: sorted,
    severityCounts,
    grade,
    verdict,
    notes: [...(opts.notes ?? []), ...content.notes],
  };
}

/** Kinds, names per inode, regular files, content bytes and the largest files: the walk alone, no reads. */
function countEntries(entries: readonly TreeEntry[], largestCount: number): Totals {
  const byKind: Record<EntryKind, number> = { file: 0, directory: 0, symlink: 0, char: 0, block: 0, fifo: 0, hardlink: 0 };
  const namesOf = new Map<Inode, string[]>();
  const files: { path: string; inode: FileInode }[] = [];
  let bytes = 0;
  for (const e of entries) {
    byKind[e.kind]++;
    const names = namesOf.get(e.inode);
    if (names) names.push(e.path);
    else namesOf.set(e.inode, [e.path]);
    if (e.kind === "file" && e.inode.kind === "file") {
      files.push({ path: e.path, inode: e.inode });
      bytes += contentSize(e.inode.content);
    }
  }
  const largest = files
    .map((f) => ({ path: f.path, bytes: contentSize(f.inode.content) }))
    .sort((a, b) => b.bytes - a.bytes || (a.path < b.path ? -1 : 1))
    .slice(0, largestCount);
  return { byKind, namesOf, files, bytes, largest };
}

/** Setuid and setgid files, world-writable entries, device nodes and file capabilities, from metadata alone. */
function permissionFindings(
  entries: readonly TreeEntry[],
  namesOf: ReadonlyMap<Inode, string[]>,
  add: AddFinding,
): Pick<AuditReport, "setuid" | "setgid" | "worldWritable" | "devices" | "capabilities"> {
  const alsoNamed = (inode: Inode): string => {
    const names = namesOf.get(inode) ?? [];
    return names.length > 1 ? ` (also named ${names.slice(1, 4).join(", ")}${names.length > 4 ? ", ..." : ""})` : "";
  };
  const setuid: string[] = [];
  const setgid: string[] = [];
  const worldWritable: string[] = [];
  const devices: AuditReport["devices"][number][] = [];
  const capabilities: { path: string; capabilities: string }[] = [];
  for (const e of entries) {
    if (e.kind === "hardlink") continue;
    const i = e.inode;
    const mode = i.mode;
    if (i.kind === "file" && mode & 0o4000) {
      setuid.push(e.path);
      add("setuid-file", e.path, `setuid, owned by uid ${i.uid}${alsoNamed(i)}: runs with its owner's privileges`);
    }
    if (i.kind === "file" && mode & 0o2000) {
      setgid.push(e.path);
      add("setgid-file", e.path, `setgid, group ${i.gid}${alsoNamed(i)}: runs with its group's privileges`);
    }
    if ((i.kind === "file" || i.kind === "fifo") && mode & 0o002) {
      worldWritable.push(e.path);
      add("world-writable-file", e.path, `any user can change this ${i.kind} (mode ${octal(mode)})${alsoNamed(i)}`);
    }
    if (i.kind === "directory" && mode & 0o002 && !(mode & 0o1000)) {
      worldWritable.push(e.path);
      add("world-writable-directory", e.path, `any user can replace or delete entries here: no sticky bit (mode ${octal(mode)})`);
    }
    if (i.kind === "char" || i.kind === "block") {
      devices.push({ path: e.path, kind: i.kind, major: i.major, minor: i.minor });
      if (i.kind === "char" && STANDARD_CHAR_DEVICES.has(`${i.major}:${i.minor}`)) {
        add("standard-device-node", e.path, `char device ${i.major}:${i.minor} (mode ${octal(mode)}), one of the harmless standard nodes`);
      } else {
        add("device-node", e.path, `${i.kind} device ${i.major}:${i.minor}, mode ${octal(mode)}: init mounts devtmpfs on /dev, so a node in the image is not needed`);
      }
    }
    const cap = i.kind === "file" ? i.xattrs.get("security.capability") : undefined;
    if (cap) {
      const text = decodeFileCapabilities(cap)?.text ?? `undecodable (${Buffer.from(cap).toString("hex")})`;
      capabilities.push({ path: e.path, capabilities: text });
      add("file-capability", e.path, `file capabilities ${text}${alsoNamed(i)}: gains these privileges when run`);
    }
  }
  return { setuid, setgid, worldWritable, devices, capabilities };
}

/** The bounded content scan of every regular file (see scanFile), and what it found. */
async function scanContents(
  files: readonly { path: string; inode: FileInode }[],
  concurrency: number,
  add: AddFinding,
): Promise<{
  scans: ReadonlyMap<FileInode, FileScan>;
  executables: string[];
  scripts: string[];
  sharedLibraries: number;
  privateKeys: { path: string; label: string }[];
  notes: string[];
}> {
  const scans = new Map<FileInode, FileScan>();
  await forEachLimit(files, concurrency, async (f) => {
    const scan = await scanFile(f.path, f.inode);
    if (scan) scans.set(f.inode, scan);
  });
  const executables: string[] = [];
  const scripts: string[] = [];
  let sharedLibraries = 0;
  const privateKeys: { path: string; label: string }[] = [];
  const unreadable: string[] = [];
  for (const f of files) {
    const scan = scans.get(f.inode);
    if (!scan) continue;
    if (scan.error) unreadable.push(`${f.path}: ${scan.error}`);
    const cls = scan.exec?.kind;
    if (cls === "program" || cls === "script") executables.push(f.path);
    if (cls === "script") scripts.push(f.path);
    if (cls === "library") sharedLibraries++;
    if (scan.exec?.kind === "malformed-elf") add("malformed-elf", f.path, scan.exec.reason);
    if (scan.privateKey) {
      privateKeys.push({ path: f.path, label: scan.privateKey });
      add("private-key", f.path, `contains a ${scan.privateKey}: anyone with the image has this key`);
    }
  }
  const notes = unreadable.slice(0, 20).map((u) => `could not read ${u}`);
  if (unreadable.length > 20) notes.push(`... and ${unreadable.length - 20} more unreadable files`);
  return { scans, executables, scripts, sharedLibraries, privateKeys, notes };
}

/** Shells and package managers, found by name in bin and sbin directories (through links), and BusyBoxes with shell applets. */
async function findShellsAndManagers(
  tree: RootfsTree,
  entries: readonly TreeEntry[],
  namesOf: ReadonlyMap<Inode, string[]>,
  scans: ReadonlyMap<FileInode, FileScan>,
  add: AddFinding,
): Promise<{ shells: string[]; packageManagers: string[] }> {
  const isRunnable = (inode: Inode | undefined): boolean => {
    if (inode?.kind !== "file" || (inode.mode & 0o111) === 0) return false;
    const k = scans.get(inode)?.exec?.kind;
    return k === "program" || k === "script";
  };
  const shells = new Set<string>();
  const managers = new Map<string, string>();
  const busyboxes = new Set<FileInode>();
  for (const e of entries) {
    const name = posix.basename(e.path);
    const target = e.kind === "symlink" ? safeResolve(tree, e.path)?.inode : e.inode;
    if (!isRunnable(target)) continue;
    if (name.startsWith("busybox") && e.kind !== "symlink") busyboxes.add(target as FileInode);
    // Commands are found by name in bin and sbin directories (any prefix:
    // /usr/local/bin, /opt/venv/bin...): a cron script called "dpkg" in
    // /etc/cron.daily is not a package manager.
    if (!IN_BIN_DIRECTORY.test(e.path)) continue;
    if (SHELL_NAMES.has(name)) shells.add(e.path);
    const manager = packageManagerFor(name);
    if (manager && !managers.has(manager)) managers.set(manager, e.path);
  }
  for (const box of busyboxes) {
    const path = (namesOf.get(box) ?? [])[0] as string;
    const data = await withContentBytes(box.content, path, (src) => src.read(0, BUSYBOX_SCAN_MAX_BYTES)).catch(() => undefined);
    if (data && busyboxShellApplets(data).length > 0) shells.add(path);
  }
  const shellList = [...shells].sort();
  if (shellList.length > 0) add("shell-present", shellList[0] as string, `a shell is present: ${listSome(shellList)}`);
  const packageManagers = [...managers.keys()].sort();
  for (const m of packageManagers) {
    add("package-manager-present", managers.get(m) as string, `package manager ${m} can install more software at run time`);
  }
  return { shells: shellList, packageManagers };
}

/** Whether the init and the configured agent are there and can start. */
async function checkInitAndAgent(
  tree: RootfsTree,
  add: AddFinding,
): Promise<{ guest: GuestFacts; init: BinaryReport | null; agent: BinaryReport | null }> {
  const guest = await readGuestFacts(tree);
  const resolver = new LibraryResolver(tree);
  const initAt = initPath(tree);
  const init = initAt === undefined ? null : await checkBinary(tree, initAt, resolver);
  const agent = await checkBinary(tree, guest.agentPath, resolver);
  if (guest.configured && !init) add("init-missing", "/sbin/init", "no init at /sbin/init or /init: the kernel has nothing to run");
  if (guest.configured && !agent) add("agent-missing", guest.agentPath, `the configured agent ${guest.agentPath} is not in the rootfs`);
  const shadow = guest.configured ? mountShadow(tree, guest.agentPath, guest.shares) : undefined;
  if (shadow) {
    const via = shadow.at === guest.agentPath ? "" : ` (it leads to ${shadow.at})`;
    add(
      "agent-hidden-by-mount",
      guest.agentPath,
      `the agent path ${guest.agentPath}${via} is under ${shadow.mount}, where init mounts ${shadow.what} at boot: ` +
        `the agent in the image is hidden, and exec finds whatever the mount holds there instead`,
    );
  }
  for (const [role, report] of [["init", init], ["agent", agent]] as const) {
    if (report) checkStartable(role, report, add);
  }
  return { guest, init, agent };
}

/** The guest directories and /etc files an A3S guest needs (reported only as context for other rootfs). */
function layoutFindings(tree: RootfsTree, guest: GuestFacts, add: AddFinding): AuditReport["layout"] {
  const layout = checkLayout(tree, guest);
  if (!guest.configured) {
    add("not-an-a3s-guest", "/etc/a3s/guest.conf", "no A3S guest config: init, agent and layout are reported for context, not required");
    return layout;
  }
  for (const p of layout.guestDirectories.missing) {
    add("guest-directory-missing", p, `${p} is missing or not a directory: on a read-only root it cannot be created at boot`);
  }
  for (const p of layout.etcFiles.missing) add("etc-file-missing", p, `${p} is missing: libc lookups that read it will fail`);
  return layout;
}

/** Accounts with an empty password or a password hash in /etc/shadow or /etc/passwd. */
async function accountFindings(tree: RootfsTree, add: AddFinding): Promise<PasswordField[]> {
  const passwordFields: PasswordField[] = [];
  for (const [file, kind] of [["/etc/shadow", "shadow"], ["/etc/passwd", "passwd"]] as const) {
    const text = await readTreeText(tree, file).catch(() => undefined);
    if (text !== undefined) passwordFields.push(...passwordProblems(file, text, kind));
  }
  for (const p of passwordFields) {
    if (p.problem === "empty") add("empty-password", p.file, `account ${p.account} has an empty password field: it needs no password`);
    else add("password-hash", p.file, `account ${p.account} has a password hash, which anyone with the image can try to crack`);
  }
  return passwordFields;
}

/** The grade is the worst severity found. */
function gradeOf(counts: Record<Severity, number>): AuditGrade {
  return counts.critical > 0 ? "fail" : counts.high > 0 ? "risky" : counts.medium > 0 ? "review" : counts.low > 0 ? "ok" : "clean";
}

/**
 * One file's bounded read: executable-mode files are classified from their
 * first bytes (ELF headers are read on demand), small files are scanned for
 * private keys. Other files are not opened at all.
 */
async function scanFile(path: string, inode: FileInode): Promise<FileScan | undefined> {
  const size = contentSize(inode.content);
  const executable = (inode.mode & 0o111) !== 0;
  const keyScan = size >= KEY_SCAN_MIN_BYTES && size <= KEY_SCAN_MAX_BYTES;
  if (!executable && !keyScan) return undefined;
  try {
    if (!executable) {
      // Read and scanned with no await in between, so one buffer serves every file.
      const n = readContentPrefixInto(inode.content, keyScanBuffer, path);
      const privateKey = findPrivateKey(keyScanBuffer.subarray(0, n));
      return privateKey ? { privateKey } : undefined;
    }
    return await withContentBytes(inode.content, path, async (src) => {
      const head = await src.read(0, keyScan ? size : SHEBANG_MAX_BYTES);
      const exec = executable ? await classifyExecutable(src, head, path) : undefined;
      const privateKey = keyScan ? findPrivateKey(head) : undefined;
      return { ...(exec ? { exec } : {}), ...(privateKey ? { privateKey } : {}) };
    });
  } catch (e) {
    return { error: (e as Error).message };
  }
}

/** Findings that say whether init or the agent can start. */
function checkStartable(role: "init" | "agent", r: BinaryReport, add: AddFinding): void {
  const what = role === "init" ? "the init" : "the agent";
  if (!r.executable || r.kind === "other") {
    const why = !r.executable ? "has no execute bit" : r.malformed ? `is a malformed ELF file (${r.malformed})` : "is neither an ELF program nor a #! script";
    add(role === "init" ? "init-not-executable" : "agent-not-executable", r.path, `${what} ${r.path} ${why}: exec would fail`);
    return;
  }
  if (r.interpreter !== null && !r.interpreterPresent) {
    add("interpreter-missing", r.path, `${what} ${r.path} needs ${r.interpreter}, which is not in the rootfs`);
  }
  for (const lib of r.missingLibraries) {
    const by = r.libraries.find((l) => l.name === lib)?.neededBy;
    const via = by && by !== r.resolvedPath ? ` (needed by ${by})` : "";
    add("library-missing", r.path, `${what} ${r.path} needs ${lib}${via}, which is not in the library path`);
  }
  if (!r.static) {
    const libraries = `${r.libraries.length} librar${r.libraries.length === 1 ? "y" : "ies"}`;
    const needs = r.kind === "script" ? `the interpreter ${r.interpreter}` : `${r.interpreter} and ${libraries}`;
    if (role === "init") add("init-dynamic", r.path, `PID 1 is dynamically linked: it needs ${needs} before anything can run`);
    else add("agent-dynamic", r.path, `the agent is dynamically linked: it needs ${needs} (the A3S contract expects a static agent)`);
  }
}

function verdictLine(
  grade: AuditGrade,
  findings: readonly Finding[],
  s: { executables: number; setuid: number; setgid: number; shells: readonly string[]; packageManagers: readonly string[] },
): string {
  const surface = [
    `${s.executables} executable${s.executables === 1 ? "" : "s"}`,
    s.setuid + s.setgid === 0 ? "no setuid or setgid file" : `setuid files: ${s.setuid}, setgid files: ${s.setgid}`,
    s.shells.length === 0 ? "no shell" : `a shell (${s.shells[0]})`,
    s.packageManagers.length === 0 ? "no package manager" : `package managers: ${s.packageManagers.join(", ")}`,
  ].join(", ");
  const worst = findings[0];
  if (grade === "clean" || !worst) return `clean: ${surface}`;
  const counts = countBySeverity(findings);
  const tally = (["critical", "high", "medium", "low"] as const)
    .filter((sev) => counts[sev] > 0)
    .map((sev) => `${counts[sev]} ${sev}`)
    .join(", ");
  const codes = [...new Set(findings.filter((f) => f.severity === worst.severity).map((f) => f.code))];
  return `${grade}: ${tally} (${listSome(codes, 4)}); ${surface}`;
}

function listSome(items: readonly string[], max = 3): string {
  return items.length <= max ? items.join(", ") : `${items.slice(0, max).join(", ")} and ${items.length - max} more`;
}

function octal(mode: number): string {
  return "0" + mode.toString(8).padStart(3, "0");
}
