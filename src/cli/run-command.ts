import type { Command } from "commander";
import { runRootfs, type RunResult } from "../boot/run-vm.js";
import { A3sError } from "../errors.js";
import { resolveBootTarget } from "./boot-reference.js";
import { action, collect, oneOf } from "./command-runner.js";

interface RunFlags {
  workspace?: string;
  skills?: string;
  kernel?: string;
  modules?: string;
  cpus?: string;
  memory?: string;
  timeout?: string;
  user?: string;
  env?: string[];
  accel?: string;
  transport?: string;
  consoleLog?: string;
  creds?: string;
  insecure?: boolean;
  platform?: string;
  json?: boolean;
  quiet?: boolean;
}

function positiveNumber(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new A3sError("EUSAGE", `${flag} must be a positive number, got ${JSON.stringify(value)}`);
  return n;
}

export function registerRunCommand(program: Command): void {
  program
    .command("run")
    .description("boot a rootfs in a QEMU microvm, run its agent, and exit with the agent's status")
    .argument(
      "<image>",
      "a cpio initramfs (.cpio/.gz/.zst), an ext4, erofs or squashfs image, a rootfs directory, or docker://REF " +
        "(an a3s boot image is pulled and booted; a container image is built into a temporary erofs first)",
    )
    .argument("[args...]", "arguments for the agent (after --), replacing the image's")
    .option("--workspace <DIR>", "host directory shared read-write at /workspace")
    .option("--skills <DIR>", "host directory shared read-only at /skills")
    .option("--kernel <FILE|debian|microvm>", "kernel to boot: a file, `debian` (Debian's generic kernel) or `microvm` (the one `kernel build` made); default: the microVM kernel when built, else Debian's")
    .option("--modules <DIR>", "modules of --kernel (a lib/modules/RELEASE tree); not needed for built-in drivers")
    .option("--cpus <N>", "virtual CPUs", "1")
    .option("--memory <MiB>", "guest memory in MiB", "512")
    .option("--timeout <S>", "seconds before the agent gets SIGTERM (then SIGKILL after 10 s)")
    .option("--user <U>", "run the agent as root, nobody, UID or UID:GID (default: the image's)")
    .option("--env <K=V>", "add to the agent's environment (repeatable)", collect)
    .option("--accel <A>", "auto, kvm or tcg", "auto")
    .option("--transport <T>", "shares over auto, virtiofs or 9p", "auto")
    .option("--console-log <FILE>", "keep the kernel and init console log")
    .option("--creds <USER:PASSWORD>", "docker://REF: registry credentials (default: ~/.docker/config.json and its credential helpers)")
    .option("--insecure", "docker://REF: allow plain HTTP and unverified TLS to a registry that is not on loopback")
    .option("--platform <OS/ARCH[/VARIANT]>", "docker://REF: the platform the image must be for (default: the host's)")
    .option("-q, --quiet", "no progress lines on stderr")
    .option("--json", "print one JSON object {exitCode, signal, stdout, stderr, accel, timeline} instead of streaming")
    .addHelpText(
      "after",
      "\nThe command exits with the agent's status (128+N when signal N killed it; 125, 126, 127 when init\n" +
        "could not start it), like docker run.\n\nExample:\n  a3s-rootfs run rootfs.cpio.gz --workspace . --skills ~/skills -- --task 'fix the tests'",
    )
    .action(
      action(async (image: string, args: string[], flags: RunFlags) => {
        const abort = new AbortController();
        const onSigint = (): void => abort.abort();
        process.once("SIGINT", onSigint);
        process.once("SIGTERM", onSigint);
        const quiet = flags.quiet || flags.json;
        const progress = quiet ? () => {} : (m: string) => process.stderr.write(`a3s-rootfs: ${m}\n`);
        let result: RunResult;
        let target: Awaited<ReturnType<typeof resolveBootTarget>> | undefined;
        try {
          target = await resolveBootTarget(image, {
            ...(flags.creds ? { creds: flags.creds } : {}),
            ...(flags.insecure ? { insecure: true } : {}),
            ...(flags.platform ? { platform: flags.platform } : {}),
            progress,
            warn: (m) => process.stderr.write(`a3s-rootfs: warning: ${m}\n`),
            signal: abort.signal,
          });
          result = await runRootfs({
            image: target.path,
            ...(args.length ? { args } : {}),
            ...(flags.workspace ? { workspace: flags.workspace } : {}),
            ...(flags.skills ? { skills: flags.skills } : {}),
            ...(flags.kernel ? { kernel: flags.kernel } : {}),
            ...(flags.modules ? { modules: flags.modules } : {}),
            cpus: positiveNumber("--cpus", flags.cpus) ?? 1,
            memoryMiB: positiveNumber("--memory", flags.memory) ?? 512,
            ...(flags.timeout ? { timeoutS: positiveNumber("--timeout", flags.timeout) as number } : {}),
            ...(flags.user ? { user: flags.user } : {}),
            ...(flags.env ? { env: flags.env } : {}),
            accel: oneOf("--accel", flags.accel, ["auto", "kvm", "tcg"] as const) ?? "auto",
            transport: oneOf("--transport", flags.transport, ["auto", "virtiofs", "9p"] as const) ?? "auto",
            ...(flags.consoleLog ? { consoleLog: flags.consoleLog } : {}),
            ...(flags.json ? {} : { stdout: process.stdout, stderr: process.stderr }),
            progress,
            signal: abort.signal,
          });
        } catch (e) {
          if (abort.signal.aborted) return 130;
          throw e;
        } finally {
          process.off("SIGINT", onSigint);
          process.off("SIGTERM", onSigint);
          await target?.dispose();
        }
        if (flags.json) {
          process.stdout.write(JSON.stringify(result) + "\n");
        } else if (result.setupError) {
          process.stderr.write(`a3s-rootfs: the agent could not start (status ${result.exitCode}): ${result.setupError}\n`);
        } else if (result.timedOut) {
          process.stderr.write(`a3s-rootfs: the agent timed out and ended with status ${result.exitCode}\n`);
        }
        return result.exitCode;
      }),
    );
}
