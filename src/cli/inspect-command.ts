import type { Command } from "commander";
import { stat } from "node:fs/promises";
import { auditTree } from "../audit/audit.js";
import type { AuditReport } from "../audit/audit-report.js";
import type { BinaryReport } from "../audit/binary-check.js";
import { SEVERITIES, type Severity } from "../audit/findings.js";
import { listEntries } from "../audit/list-entries.js";
import { openInspectTarget, type InspectTarget } from "../audit/open-target.js";
import { checkVerity, type VerityReport } from "../audit/verity-check.js";
import { A3sError } from "../errors.js";
import { detectFileFormat } from "../formats/detect.js";
import { parsePlatform } from "../oci/platform.js";
import { parseReference } from "../oci/reference.js";
import { pullBootImage } from "../oci/registry/boot-image-pull.js";
import { RegistryClient } from "../oci/registry/client.js";
import { parseCredsFlag } from "../oci/registry/credentials.js";
import { action, oneOf } from "./command-runner.js";
import { humanBytes, modeString } from "./format.js";

/** Exit status of `inspect --fail-on` when a finding reaches the threshold (1 and 2 are errors). */
const FINDINGS_EXIT_STATUS = 3;

interface InspectFlags {
  json?: boolean;
  list?: boolean;
  failOn?: string;
  verify?: boolean;
  rootHash?: string;
  creds?: string;
  insecure?: boolean;
  platform?: string;
}

export function registerInspectCommand(program: Command): void {
  program
    .command("inspect")
    .description(
      "audit a rootfs: size, executables, setuid/setgid, capabilities, world-writable entries, devices, shells, " +
        "package managers, init and agent, layout, secrets; a directory, tar or cpio (.gz/.zst), ext4, erofs or " +
        "squashfs image, or a source such as oci:DIR[:REF] or docker://REF",
    )
    .argument("<target>", "the rootfs to inspect")
    .option("--json", "print one JSON object (the audit report; with --list: {target, entries, bytes, byKind, list})")
    .option("--list", "list every entry (kind, mode, owner, size, link, sha256) instead of auditing")
    .option("--verify", "erofs, squashfs and ext4 images built with --verity: check every block against the root hash; exit 1 if one does not match")
    .option("--root-hash <HEX>", "the root hash to verify against (default: the image's IMAGE.verity.json)")
    .option("--creds <USER:PASSWORD>", "docker://REF: registry credentials (default: ~/.docker/config.json and its credential helpers)")
    .option("--insecure", "docker://REF: allow plain HTTP and unverified TLS to a registry that is not on loopback")
    .option("--platform <OS/ARCH[/VARIANT]>", "docker://REF and oci: the platform to read (default: the host's)")
    .option("--fail-on <severity>", `exit with status ${FINDINGS_EXIT_STATUS} if a finding is this severe or worse (${SEVERITIES.join(", ")})`)
    .action(
      action(async ({ signal }, target: string, flags: InspectFlags) => {
        const failOn = oneOf("--fail-on", flags.failOn, SEVERITIES);
        if ((flags.verify || flags.rootHash) && flags.list) throw new A3sError("EUSAGE", "--verify and --root-hash go with the audit, not --list");
        if (flags.rootHash !== undefined && !/^[0-9a-fA-F]{64}$/.test(flags.rootHash)) {
          throw new A3sError("EUSAGE", `--root-hash must be 64 hex digits, got ${JSON.stringify(flags.rootHash)}`);
        }
        // --verify comes first: an image that fails verification is not read any further.
        const verity = await verityOf(target, flags, signal);
        if (verity?.mismatch) {
          if (flags.json) process.stdout.write(JSON.stringify({ target, verity }) + "\n");
          process.stderr.write(`a3s-rootfs: ${target}: verification failed: ${verity.mismatch}\n`);
          return 1;
        }
        const sourceOptions = {
          ...(flags.creds ? { creds: flags.creds } : {}),
          ...(flags.insecure ? { insecure: true } : {}),
          ...(flags.platform ? { platform: flags.platform } : {}),
        };
        const opened = await openInspectTarget(target, { sourceContext: { progress: progressLine, signal }, sourceOptions });
        try {
          if (flags.list) {
            await printListing(target, opened, flags.json === true);
            return;
          }
          const audit = await auditTree(opened.tree, {
            target,
            format: opened.format,
            notes: opened.notes,
            xattrsRead: opened.xattrsRead,
          });
          const report: AuditReport = verity ? { ...audit, verity } : audit;
          process.stdout.write(flags.json ? JSON.stringify(report) + "\n" : renderReport(report));
          if (failOn && reaches(report, failOn)) return FINDINGS_EXIT_STATUS;
        } finally {
          await opened.dispose();
        }
      }),
    );
}

/** The verity report of an erofs, squashfs or ext4 image file (checked with --verify); undefined for anything else. */
async function verityOf(target: string, flags: InspectFlags, signal: AbortSignal): Promise<VerityReport | undefined> {
  if (target.startsWith("docker://")) return (flags.verify || flags.rootHash) ? pulledVerity(target, flags, signal) : undefined;
  const format = await stat(target).then((st) => (st.isFile() ? detectFileFormat(target) : undefined), () => undefined);
  const isImage = format === "erofs" || format === "squashfs" || format === "ext4";
  if (!isImage) {
    if (flags.verify || flags.rootHash) throw new A3sError("EUSAGE", `--verify and --root-hash need an erofs, squashfs or ext4 image; ${target} is not one`);
    return undefined;
  }
  return checkVerity(target, format, { ...(flags.verify ? { verify: true } : {}), ...(flags.rootHash ? { rootHash: flags.rootHash } : {}), signal });
}

function progressLine(message: string): void {
  if (process.stderr.isTTY) process.stderr.write(`a3s-rootfs: ${message}\n`);
}

function reaches(report: AuditReport, threshold: Severity): boolean {
  const limit = SEVERITIES.indexOf(threshold);
  return report.findings.some((f) => SEVERITIES.indexOf(f.severity) <= limit);
}

async function printListing(target: string, opened: InspectTarget, json: boolean): Promise<void> {
  const list = await listEntries(opened.tree);
  const byKind: Record<string, number> = {};
  for (const e of list) byKind[e.kind] = (byKind[e.kind] ?? 0) + 1;
  const bytes = opened.tree.contentBytes();
  if (json) {
    process.stdout.write(JSON.stringify({ target, entries: list.length, bytes, byKind, list }) + "\n");
    return;
  }
  const width = Math.max(1, ...list.map((e) => String(e.size).length));
  for (const e of list) {
    const owner = `${e.uid}/${e.gid}`.padEnd(11);
    const size = (e.device ?? String(e.size)).padStart(width);
    const link = e.link ? (e.kind === "hardlink" ? ` => ${e.link}` : ` -> ${e.link}`) : "";
    const hash = e.sha256 ? `  ${e.sha256.slice(0, 12)}` : "";
    process.stdout.write(`${modeString(e.kind, e.mode)} ${owner} ${size} ${e.path}${link}${hash}\n`);
  }
  const kinds = Object.entries(byKind)
    .map(([k, n]) => `${n} ${k}`)
    .join(", ");
  process.stdout.write(`${list.length} entries (${kinds}), ${humanBytes(bytes)} of file content\n`);
}

/** The report for people: the verdict first, then each part in a line or two, then the findings. */
function renderReport(r: AuditReport): string {
  const lines: string[] = [];
  const kinds = Object.entries(r.byKind)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${n} ${k}`)
    .join(", ");
  lines.push(`${r.target} (${r.format}): ${r.entries} entries (${kinds}), ${humanBytes(r.bytes)} of file content`);
  lines.push(`verdict: ${r.verdict}`);
  lines.push("");
  const some = (paths: readonly string[], max = 8): string =>
    paths.length === 0 ? "none" : paths.length <= max ? paths.join(", ") : `${paths.slice(0, max).join(", ")}, ... (${paths.length})`;
  lines.push(`executables (${r.executableCount}): ${some(r.executables)}`);
  if (r.scripts.length > 0) lines.push(`  of which scripts (${r.scripts.length}): ${some(r.scripts)}`);
  lines.push(`init:  ${binaryLine(r.init, "/sbin/init or /init")}`);
  lines.push(`agent: ${binaryLine(r.agent, r.agentPath)}`);
  lines.push(`largest: ${r.largest.slice(0, 5).map((l) => `${l.path} ${humanBytes(l.bytes)}`).join(", ") || "none"}`);
  lines.push(`setuid: ${some(r.setuid)}`);
  lines.push(`setgid: ${some(r.setgid)}`);
  lines.push(`capabilities: ${r.capabilities.length === 0 ? "none" : r.capabilities.map((c) => `${c.path} ${c.capabilities}`).join(", ")}`);
  lines.push(`world-writable: ${some(r.worldWritable)}`);
  lines.push(`devices: ${some(r.devices.map((d) => `${d.path} (${d.kind} ${d.major}:${d.minor})`))}`);
  lines.push(`shells: ${some(r.shells)}`);
  lines.push(`package managers: ${r.packageManagers.join(", ") || "none"}`);
  const l = r.layout;
  lines.push(
    `guest layout: ${l.guestDirectories.present.length}/${l.guestDirectories.present.length + l.guestDirectories.missing.length} directories` +
      `${l.guestDirectories.missing.length ? ` (missing ${l.guestDirectories.missing.join(", ")})` : ""}, ` +
      `${l.etcFiles.present.length}/${l.etcFiles.present.length + l.etcFiles.missing.length} /etc files` +
      `${l.etcFiles.missing.length ? ` (missing ${l.etcFiles.missing.join(", ")})` : ""}`,
  );
  lines.push(`FHS directories: ${l.fhsDirectories.present.join(" ") || "none"}${l.fhsDirectories.missing.length ? ` (absent: ${l.fhsDirectories.missing.join(" ")})` : ""}`);
  const secrets = [
    ...r.privateKeys.map((k) => `${k.path} (${k.label})`),
    ...r.passwordFields.map((p) => `${p.file}: ${p.account} (${p.problem === "hash" ? "password hash" : "empty password"})`),
  ];
  lines.push(`risky files: ${secrets.join(", ") || "none"}`);
  if (r.verity) lines.push(`dm-verity: ${verityLine(r.verity)}`);
  for (const n of r.notes) lines.push(`note: ${n}`);
  lines.push("");
  if (r.findings.length === 0) lines.push("findings: none");
  else {
    lines.push(`findings (${r.findings.length}):`);
    const codeWidth = Math.max(...r.findings.map((f) => f.code.length));
    for (const f of r.findings) {
      lines.push(`  ${f.severity.toUpperCase().padEnd(8)} ${f.code.padEnd(codeWidth)}  ${f.path}: ${f.message}`);
    }
  }
  return lines.join("\n") + "\n";
}

function verityLine(v: VerityReport): string {
  if (!v.present) return "none (not built with --verity)";
  const root = v.rootHash ? `root hash ${v.rootHash} (${v.rootHashSource === "sidecar" ? "from the .verity.json record" : "--root-hash"})` : "root hash unknown";
  const verdict = v.mismatch === undefined ? "" : v.mismatch === null ? "; verified: every block matches" : `; FAILED: ${v.mismatch}`;
  return `hash tree at byte ${v.hashOffset} over ${v.dataBlocks} blocks, ${root}${verdict}`;
}

function binaryLine(b: BinaryReport | null, where: string): string {
  if (!b) return `none at ${where}`;
  const at = b.resolvedPath === b.path ? b.path : `${b.path} -> ${b.resolvedPath}`;
  if (b.kind === "other") return `${at}: not executable${b.malformed ? ` (${b.malformed})` : ""}`;
  if (b.static) return `${at}: static ELF`;
  const interp = `${b.interpreter}${b.interpreterPresent ? "" : " (missing)"}`;
  if (b.kind === "script") return `${at}: script for ${interp}`;
  const missing = b.missingLibraries.length ? `, missing ${b.missingLibraries.join(", ")}` : "";
  return `${at}: dynamic ELF, interpreter ${interp}, ${b.libraries.length} libraries${missing}`;
}

/**
 * --verify of `docker://REF`: the a3s boot image artifact is pulled into the
 * store (verified against its digest as always) and its blocks checked
 * against the root hash its annotation carries, or against --root-hash.
 */
async function pulledVerity(target: string, flags: InspectFlags, signal: AbortSignal): Promise<VerityReport> {
  const client = new RegistryClient({
    warn: (m) => process.stderr.write(`a3s-rootfs: warning: ${m}\n`),
    progress: progressLine,
    ...(flags.creds ? { credentials: parseCredsFlag(flags.creds) } : {}),
    ...(flags.insecure ? { insecure: true } : {}),
  });
  const pulled = await pullBootImage(client, parseReference(target.slice("docker://".length)), {
    progress: progressLine,
    signal,
    ...(flags.platform ? { platform: parsePlatform(flags.platform) } : {}),
  });
  if (!pulled || pulled.format === "cpio") {
    throw new A3sError("EUSAGE", `--verify and --root-hash need an erofs, squashfs or ext4 image; ${target} is ${pulled ? "a cpio boot image" : "not an a3s boot image"}`);
  }
  const rootHash = flags.rootHash ?? pulled.verity?.rootHash;
  return checkVerity(pulled.path, pulled.format, {
    ...(flags.verify ? { verify: true } : {}),
    ...(rootHash ? { rootHash, rootHashSource: flags.rootHash ? "--root-hash" : "registry" } : {}),
    name: target,
    signal,
  });
}
