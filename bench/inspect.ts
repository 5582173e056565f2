// Benchmark: `a3s-rootfs inspect DIR --json` on a tree of about 10,000
// entries (target ≤ 1 s), side by side with what a user would run instead
// to learn less:
//   find DIR -type f \( -perm -4000 -o -perm -2000 \)      setuid/setgid
//   find DIR -type f -perm /111 -exec file {} +            what each executable is
// and, for scale, a plain metadata walk: find DIR -printf '%m %U %G %s %p\n'.
// The tree is hard links (cp -al; a copy where that fails) of whole /usr
// subdirectories, added until there are 10,000 names: /usr/bin gives ELF
// programs, scripts and a few setuid files, /usr/include thousands of small
// text files the key scan reads. Runs are interleaved, median of RUNS each,
// after one unmeasured round that warms the page cache.
//   npm run build && node dist/bench/inspect.js [RUNS] [ENTRIES]
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { auditTree } from "../src/audit/audit.js";
import { openInspectTarget } from "../src/audit/open-target.js";
import { machineLine, median, writeResults } from "./stats.js";

const CANDIDATES = ["/usr/bin", "/usr/include", "/usr/sbin", "/usr/share/perl5", "/usr/lib/python3", "/usr/share/doc", "/usr/share/man", "/usr/share"];

const q = (s: string): string => `'${s.replaceAll("'", "'\\''")}'`;

function countEntries(dir: string): number {
  return Number(execFileSync("bash", ["-c", `find ${q(dir)} | wc -l`], { encoding: "utf8" }).trim());
}

/** A directory of about `target` names made of whole /usr subdirectories. */
function makeTree(work: string, target: number): { root: string; sources: string[] } {
  const root = join(work, "rootfs");
  mkdirSync(join(root, "usr"), { recursive: true });
  const sources: string[] = [];
  for (const dir of CANDIDATES) {
    if (countEntries(root) >= target) break;
    if (!existsSync(dir)) continue;
    const dest = join(root, "usr");
    const linked = spawnSync("cp", ["-al", dir, dest], { stdio: "ignore" });
    if (linked.status !== 0) execFileSync("cp", ["-a", dir, dest]);
    sources.push(dir);
  }
  return { root, sources };
}

interface Timed {
  ms: number;
  cpuS: number;
}

/** Runs a shell command under /usr/bin/time; wall time measured here, CPU from time(1). */
function timed(command: string, work: string): Timed {
  const timeFile = join(work, "time");
  const t = performance.now();
  const r = spawnSync("/usr/bin/time", ["-f", "%U %S", "-o", timeFile, "bash", "-c", command], { stdio: ["ignore", "ignore", "pipe"] });
  const ms = performance.now() - t;
  if (r.status !== 0) throw new Error(`${command} failed: ${String(r.stderr)}`);
  const [user, sys] = (execFileSync("tail", ["-n1", timeFile], { encoding: "utf8" }).trim().split(" ").map(Number)) as [number, number];
  return { ms, cpuS: user + sys };
}

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 5);
  const target = Number(process.argv[3] ?? 10_000);
  const work = mkdtempSync(join(tmpdir(), "a3s-bench-inspect-"));
  try {
    const { root, sources } = makeTree(work, target);
    const entries = countEntries(root);
    const cli = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
    const commands = {
      ours: { label: "`a3s-rootfs inspect DIR --json`", cmd: `node ${q(cli)} inspect ${q(root)} --json > /dev/null` },
      findFile: {
        label: "`find -perm -4000 -o -perm -2000` + `find -perm /111 -exec file {} +`",
        cmd: `find ${q(root)} -type f \\( -perm -4000 -o -perm -2000 \\) > /dev/null && find ${q(root)} -type f -perm /111 -exec file {} + > /dev/null`,
      },
      findStat: { label: "`find DIR -printf '%m %U %G %s %p\\n'`", cmd: `find ${q(root)} -printf '%m %U %G %s %p\\n' > /dev/null` },
    } as const;
    type Key = keyof typeof commands;
    const results = { ours: [] as Timed[], findFile: [] as Timed[], findStat: [] as Timed[] };
    const phases: { readMs: number; auditMs: number; readCpuMs: number; auditCpuMs: number }[] = [];
    const loadBefore = loadavg()[0] ?? 0;
    for (let round = -1; round < runs; round++) {
      for (const key of Object.keys(commands) as Key[]) {
        const r = timed(commands[key].cmd, work);
        if (round >= 0) results[key].push(r);
      }
      // In-process, to split our time into reading the directory and auditing the tree.
      const cpu = (u: NodeJS.CpuUsage): number => (u.user + u.system) / 1000;
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      const opened = await openInspectTarget(root);
      const t1 = performance.now();
      const c1 = process.cpuUsage();
      await auditTree(opened.tree, { xattrsRead: opened.xattrsRead });
      const t2 = performance.now();
      const c2 = process.cpuUsage();
      await opened.dispose();
      if (round >= 0) phases.push({ readMs: t1 - t0, auditMs: t2 - t1, readCpuMs: cpu(c1) - cpu(c0), auditCpuMs: cpu(c2) - cpu(c1) });
      if (round >= 0) process.stderr.write(`round ${round + 1}: ours ${results.ours.at(-1)?.ms.toFixed(0)} ms, find+file ${results.findFile.at(-1)?.ms.toFixed(0)} ms\n`);
    }
    const loadAfter = loadavg()[0] ?? 0;
    const opened = await openInspectTarget(root);
    const report = await auditTree(opened.tree, { xattrsRead: opened.xattrsRead });
    const summary = (k: Key): { label: string; medianMs: number; medianCpuS: number; runsMs: number[] } => ({
      label: commands[k].label,
      medianMs: median(results[k].map((r) => r.ms)),
      medianCpuS: median(results[k].map((r) => r.cpuS)),
      runsMs: results[k].map((r) => Math.round(r.ms)),
    });
    const s = { ours: summary("ours"), findFile: summary("findFile"), findStat: summary("findStat") };
    const json = {
      machine: machineLine(),
      cores: Number(execFileSync("nproc", { encoding: "utf8" }).trim()),
      load: [loadBefore, loadAfter],
      tree: { sources, entries, executables: report.executableCount, setuid: report.setuid.length, setgid: report.setgid.length, bytes: report.bytes },
      runs,
      results: s,
      ratios: {
        oursVsFindFile: s.ours.medianMs / s.findFile.medianMs,
        oursVsFindStat: s.ours.medianMs / s.findStat.medianMs,
        cpuOursVsFindFile: s.ours.medianCpuS / s.findFile.medianCpuS,
      },
      oursInProcessMedianMs: {
        read: median(phases.map((p) => p.readMs)),
        audit: median(phases.map((p) => p.auditMs)),
        /** CPU of this process only (getfattr, a child, is not included). */
        readCpu: median(phases.map((p) => p.readCpuMs)),
        auditCpu: median(phases.map((p) => p.auditCpuMs)),
      },
      target: { inspectMsMax: 1000 },
      verdict: report.verdict,
    };
    const ms = (x: number): string => `${Math.round(x)} ms`;
    const row = (k: Key): string =>
      `| ${s[k].label} | ${ms(s[k].medianMs)} | ${k === "ours" ? "—" : `${(s.ours.medianMs / s[k].medianMs).toFixed(2)}×`} | ` +
      `${s[k].medianCpuS.toFixed(2)} s | ${s[k].runsMs.map(ms).join(", ")} |`;
    const md = [
      `# inspect: ${entries} entries (${sources.join(", ")} as a directory), median of ${runs} runs`,
      "",
      `${json.machine}, ${json.cores} cores, load average ${loadBefore.toFixed(1)} before / ${loadAfter.toFixed(1)} after. Target: inspect ≤ 1 s.`,
      "",
      "| command | median wall time | ours / this | median CPU (user+sys) | runs |",
      "|---|---|---|---|---|",
      row("ours"),
      row("findFile"),
      row("findStat"),
      "",
      `ours / (find + file): ${json.ratios.oursVsFindFile.toFixed(2)}× wall, ${json.ratios.cpuOursVsFindFile.toFixed(2)}× CPU; ` +
        `ours / a bare find walk: ${json.ratios.oursVsFindStat.toFixed(2)}×.`,
      `Our wall time includes starting node (~0.1 s). In process, median: reading the directory ${ms(json.oursInProcessMedianMs.read)} wall / ` +
        `${ms(json.oursInProcessMedianMs.readCpu)} CPU (readDirectoryTree: one awaited lstat per name, and one getfattr -R alongside), ` +
        `the audit of the tree ${ms(json.oursInProcessMedianMs.audit)} wall / ${ms(json.oursInProcessMedianMs.auditCpu)} CPU.`,
      `The audit found ${report.executableCount} executables, ${report.setuid.length} setuid and ${report.setgid.length} setgid files; ` +
        "besides what the find + file pair tells, it read every file of 60 B to 16 KiB for private keys, and looked for " +
        "capabilities, world-writable entries, devices, shells, package managers, the init and agent, and the guest layout.",
      "The machine is shared (see the load average): wall times vary from run to run, CPU times much less.",
      `Verdict on this tree: ${report.verdict}`,
      "",
      "Command: `npm run build && node dist/bench/inspect.js [RUNS] [ENTRIES]`",
    ].join("\n");
    await opened.dispose();
    writeResults("inspect", json, md);
    process.stdout.write(md + "\n");
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
