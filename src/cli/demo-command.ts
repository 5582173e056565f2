import type { Command } from "commander";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runRootfs } from "../boot/run-vm.js";
import { RootfsBuilder } from "../builder/rootfs-builder.js";
import { ensureHostRequirements } from "../doctor/index.js";
import { guestProgramPath } from "../programs/index.js";
import { action } from "./command-runner.js";
import { humanBytes } from "./format.js";

/**
 * The main job end to end on a built-in default: build the scratch rootfs
 * with the probe as its agent, boot it with a sample workspace and skills
 * directory, and show what the agent saw and how long each step took.
 */
export function registerDemoCommand(program: Command): void {
  program
    .command("demo")
    .description("build the default rootfs with the built-in probe agent, boot it, and show the probe's report")
    .option("--accel <A>", "auto, kvm or tcg", "auto")
    .option("--json", "print the build and run results as one JSON object")
    .action(
      action(async ({ signal }, flags: { accel?: string; json?: boolean }) => {
        const say = (m: string): void => {
          if (!flags.json) process.stderr.write(`a3s-rootfs: ${m}\n`);
        };
        // What `doctor --fix` would install for runs, when something is missing (QEMU on a fresh machine).
        await ensureHostRequirements(["run"], say);
        const work = await mkdtemp(join(tmpdir(), "a3s-demo-"));
        try {
          const workspace = join(work, "workspace");
          const skills = join(work, "skills");
          await mkdir(join(workspace, "src"), { recursive: true });
          await mkdir(skills);
          await writeFile(join(workspace, "README.md"), "# sample project\n");
          await writeFile(join(workspace, "src", "main.py"), "print('hello from the workspace')\n");
          await writeFile(join(skills, "review.md"), "# skill: code review\n");

          const image = join(work, "rootfs.cpio.gz");
          const build = await new RootfsBuilder()
            .withAgentBinary(guestProgramPath("probe"))
            .withAgentArgs(["--write", "/workspace/written-by-the-agent.txt"])
            .withOutput("cpio", image)
            .build({ signal });
          say(`built the scratch rootfs: ${build.entries} entries, ${humanBytes(build.outputs[0]?.bytes ?? 0)} as cpio.gz`);

          const run = await runRootfs({
            image,
            workspace,
            skills,
            accel: flags.accel === "kvm" || flags.accel === "tcg" ? flags.accel : "auto",
            timeoutS: 120,
            progress: say,
            signal,
          });
          if (flags.json) {
            const { tree: _tree, ...buildReport } = build;
            process.stdout.write(JSON.stringify({ build: buildReport, run }) + "\n");
            return run.exitCode;
          }
          printReport(run.stdout, run.exitCode, run.accel, run.timeline);
          return run.exitCode;
        } finally {
          await rm(work, { recursive: true, force: true });
        }
      }),
    );
}

function printReport(
  stdout: string,
  exitCode: number,
  accel: string,
  t: { initStartMs: number | null; agentStartMs: number | null; agentExitMs: number | null; vmExitMs: number; agentStartHostMs: number | null },
): void {
  const out = (s: string): boolean => process.stdout.write(s + "\n");
  let report: unknown;
  try {
    report = JSON.parse(stdout);
  } catch {
    report = undefined;
  }
  out("The agent's report (the probe, running as PID 1's child in the guest):");
  out(report === undefined ? stdout : JSON.stringify(report, null, 2));
  out("");
  out(`Boot timeline (${accel.toUpperCase()}; guest times from the guest's clock, since the kernel started):`);
  const ms = (v: number | null): string => (v === null ? "—" : `${v.toFixed(0)} ms`);
  out(`  kernel start → init start      ${ms(t.initStartMs)}`);
  out(`  init start → agent start       ${ms(t.initStartMs !== null && t.agentStartMs !== null ? t.agentStartMs - t.initStartMs : null)}`);
  out(`  agent ran                      ${ms(t.agentStartMs !== null && t.agentExitMs !== null ? t.agentExitMs - t.agentStartMs : null)}`);
  out(`  VMM start → agent start (host) ${ms(t.agentStartHostMs)}`);
  out(`  VMM start → VM exit (host)     ${ms(t.vmExitMs)}`);
  out(`Agent exit status: ${exitCode}`);
}
