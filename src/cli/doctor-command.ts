import type { Command } from "commander";
import {
  applyFixes,
  checkHost,
  defaultGroups,
  hostSystem,
  planFixes,
  REQUIREMENT_GROUPS,
  runnableHere,
  type FixStep,
  type HostCheck,
  type HostReport,
  type HostSystem,
  type RequirementGroup,
} from "../doctor/index.js";
import { A3sError } from "../errors.js";
import { action, collect } from "./command-runner.js";

export function registerDoctorCommand(program: Command): void {
  program
    .command("doctor")
    .description("check every host requirement (tools and their versions, KVM, virtiofsd, kernels, cache space); --fix installs what is missing")
    .option("--with <GROUPS>", `also check these groups (comma-separated, repeatable): ${REQUIREMENT_GROUPS.join(", ")}, or all`, collect, [])
    .option("--fix", "install what is missing: Debian packages with apt-get (as root on Debian or Ubuntu), then virtiofsd and the kernels into the cache")
    .option("--json", "print one JSON object {ok, system, node, packageRoot, cacheDir, groups, checks, fixes}")
    .addHelpText(
      "after",
      "\nGroups: build (build and inspect), sources (busybox, debootstrap:) and run (run, demo) are checked by\n" +
        "default, and guest-build in a checkout; tests (the test suite and benchmarks) and kernel-build\n" +
        "(a3s-rootfs kernel build) with --with. A failed check means a command that needs it fails; a warning\n" +
        "means it works but does less, or slower (the line below it says how).\n" +
        "Without root, or off Debian and Ubuntu, --fix prints the exact commands instead of running them.\n" +
        "Exit status: 0 when no check failed (warnings allowed), 1 otherwise.",
    )
    .action(
      action(async ({ signal }, flags: { with: string[]; fix?: boolean; json?: boolean }) => {
        const progress = (m: string): boolean => process.stderr.write(`a3s-rootfs: doctor: ${m}\n`);
        const system = hostSystem();
        const groups = chosenGroups(flags.with);
        let report = await checkHost({ groups, system });
        let pending = planFixes(report);
        const applied: string[] = [];
        if (flags.fix && pending.length > 0) {
          // Everything after the packages needs them: when an apt step cannot run here, none runs.
          if (pending.every((s) => runnableHere(s, system))) {
            try {
              await applyFixes(pending, { cacheDir: report.cacheDir, progress, signal });
            } finally {
              applied.push(...pending.map((s) => s.command));
              report = await checkHost({ groups, system });
              pending = planFixes(report);
            }
          }
        }
        if (flags.json) {
          process.stdout.write(JSON.stringify({ ...report, fixes: pending.map((s) => ({ command: s.command, root: s.root })), applied }) + "\n");
        } else {
          printReport(report, pending, system, Boolean(flags.fix));
        }
        return report.ok ? 0 : 1;
      }),
    );
}

function chosenGroups(names: readonly string[]): RequirementGroup[] {
  const chosen = new Set<RequirementGroup>(defaultGroups());
  for (const name of names.flatMap((n) => n.split(",")).map((n) => n.trim()).filter(Boolean)) {
    if (name === "all") REQUIREMENT_GROUPS.forEach((g) => chosen.add(g));
    else if ((REQUIREMENT_GROUPS as readonly string[]).includes(name)) chosen.add(name as RequirementGroup);
    else throw new A3sError("EUSAGE", `--with: unknown group ${JSON.stringify(name)}; the groups are ${REQUIREMENT_GROUPS.join(", ")}, all`);
  }
  return [...chosen];
}

function printReport(report: HostReport, pending: readonly FixStep[], system: HostSystem, fixing: boolean): void {
  const out = (s: string): boolean => process.stdout.write(s + "\n");
  out(`a3s-rootfs doctor: ${report.system.name}${report.system.root ? ", as root" : ""}; package ${report.packageRoot}; cache ${report.cacheDir}`);
  const width = (f: (c: HostCheck) => string, min: number): number => Math.max(min, ...report.checks.map((c) => f(c).length));
  const cols = {
    id: width((c) => c.id, 5),
    version: width((c) => c.version ?? "-", 7),
    pkg: width((c) => c.debianPackage ?? "-", 14),
  };
  for (const group of report.groups) {
    const rows = report.checks.filter((c) => c.group === group);
    if (rows.length === 0) continue;
    out("");
    out(`${group}:`);
    out(`  ${"".padEnd(5)} ${"CHECK".padEnd(cols.id)}  ${"VERSION".padEnd(cols.version)}  ${"DEBIAN PACKAGE".padEnd(cols.pkg)}  NEEDED BY`);
    for (const c of rows) {
      const status = c.status === "ok" ? "ok" : c.status === "warn" ? "WARN" : "FAIL";
      out(`  ${status.padEnd(5)} ${c.id.padEnd(cols.id)}  ${(c.version ?? "-").padEnd(cols.version)}  ${(c.debianPackage ?? "-").padEnd(cols.pkg)}  ${c.neededBy}${c.need === "optional" ? " (optional)" : ""}`);
      if (c.detail) out(`  ${"".padEnd(5)} ${"".padEnd(cols.id)}  ${c.detail}`);
    }
  }
  const count = (s: HostCheck["status"]): number => report.checks.filter((c) => c.status === s).length;
  out("");
  const warnings = count("warn");
  out(`${report.checks.length} checks: ${count("ok")} ok, ${warnings} warning${warnings === 1 ? "" : "s"}, ${count("fail")} failed.`);
  if (pending.length === 0) return;
  out("");
  const blocked = pending.some((s) => !runnableHere(s, system));
  if (pending.some((s) => s.root) && !system.debianLike) {
    out("This host is not Debian or Ubuntu (or has no apt-get). Install the equivalents of the Debian packages named");
    out("below, then run the rest:");
  } else if (blocked) {
    out("To fix it, run:");
  } else {
    out(fixing ? "Still to do:" : "To fix it, run `a3s-rootfs doctor --fix`, or:");
  }
  for (const s of pending) out(`  ${s.command}${s.root && !system.root ? "   # as root" : ""}`);
}
