// Benchmark: the scratch rootfs with a 1 MB static agent, built in-process to
// a dir and to a cpio.gz, side by side with the shell a user would otherwise
// write (mkdir/cp/printf, then find | cpio -o -H newc | gzip).
// Run: npm run build && node dist/bench/scratch-build.js
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RootfsBuilder } from "../src/index.js";
import { compileTestBinary } from "../test/helpers/static-binary.js";
import { machineLine, median, timeRuns, writeResults } from "./stats.js";

const RUNS = 30;
const agent = compileTestBinary({ padBytes: 1024 * 1024 });
const work = mkdtempSync(join(tmpdir(), "a3s-bench-scratch-"));
let n = 0;

const shellLayout = `set -e
r="$1"; mkdir -p "$r"/a3s/agent "$r"/workspace "$r"/skills "$r"/dev "$r"/proc "$r"/sys "$r"/etc "$r"/tmp "$r"/run "$r"/var/tmp "$r"/var/log "$r"/sbin "$r"/root
chmod 1777 "$r"/tmp "$r"/var/tmp
cp "$2" "$r"/a3s/agent/a3s-box-code; chmod 755 "$r"/a3s/agent/a3s-box-code
printf 'root:x:0:0:root:/root:/bin/sh\\nnobody:x:65534:65534:nobody:/:/bin/false\\n' > "$r"/etc/passwd
printf 'root:x:0:\\nnogroup:x:65534:\\n' > "$r"/etc/group
printf '127.0.0.1 localhost\\n::1 localhost\\n' > "$r"/etc/hosts
printf 'nameserver 8.8.8.8\\nnameserver 8.8.4.4\\n' > "$r"/etc/resolv.conf
printf 'passwd: files\\ngroup: files\\nhosts: files dns\\n' > "$r"/etc/nsswitch.conf
echo a3s-box > "$r"/etc/hostname
`;

async function main(): Promise<void> {
  const oursDir = await timeRuns(RUNS, 3, async () => {
    await new RootfsBuilder(join(work, `dir-${n++}`)).withAgentBinary(agent).onWarning(() => {}).build();
  });
  const oursCpio = await timeRuns(RUNS, 3, async () => {
    await new RootfsBuilder().withAgentBinary(agent).withOutput("cpio", join(work, `r-${n++}.cpio.gz`)).build();
  });
  const shellDir = await timeRuns(RUNS, 3, () => {
    execFileSync("sh", ["-c", shellLayout, "sh", join(work, `sh-${n++}`), agent]);
  });
  const shellCpio = await timeRuns(RUNS, 3, () => {
    const d = join(work, `shc-${n++}`);
    execFileSync("sh", ["-c", shellLayout, "sh", d, agent]);
    execFileSync("sh", ["-c", `cd "$1" && find . | cpio -o -H newc --quiet | gzip -6 > "$1.cpio.gz"`, "sh", d]);
  });
  rmSync(work, { recursive: true, force: true });

  const rows = [
    { case: "scratch → dir", oursMs: median(oursDir), shellMs: median(shellDir), targetMs: 20 },
    { case: "scratch → cpio.gz", oursMs: median(oursCpio), shellMs: median(shellCpio), targetMs: 30 },
  ].map((r) => ({ ...r, ratio: r.oursMs / r.shellMs }));
  const md = [
    "# Scratch build, 1 MB static agent (median of " + RUNS + " runs)",
    "",
    machineLine(),
    "",
    "| case | a3s-rootfs (in-process) | shell (mkdir/cp/printf; find \\| cpio \\| gzip) | ratio | target |",
    "|---|---|---|---|---|",
    ...rows.map((r) => `| ${r.case} | ${r.oursMs.toFixed(1)} ms | ${r.shellMs.toFixed(1)} ms | ${r.ratio.toFixed(2)}× | ≤ ${r.targetMs} ms |`),
    "",
    "Command: `npm run build && node dist/bench/scratch-build.js`",
  ].join("\n");
  writeResults("scratch-build", { runs: RUNS, machine: machineLine(), rows }, md);
  process.stdout.write(md + "\n");
}

await main();
