import type { Command } from "commander";
import { makeSnapshot } from "../boot/make-snapshot.js";
import { action, oneOf, positiveNumber } from "./command-runner.js";
import { humanBytes } from "./format.js";

interface SnapshotFlags {
  output?: string;
  kernel?: string;
  modules?: string;
  cpus?: string;
  memory?: string;
  accel?: string;
  transport?: string;
  json?: boolean;
  quiet?: boolean;
}


export function registerSnapshotCommand(program: Command): void {
  program
    .command("snapshot")
    .description("boot an image to the point where init waits for its job, and save the machine there for run --snapshot")
    .argument("<image>", "a cpio initramfs (.cpio/.gz/.zst), or an ext4, erofs or squashfs image")
    .requiredOption("-o, --output <DIR>", "the snapshot directory to write (an existing one is replaced only if it is a snapshot a3s-rootfs wrote)")
    .option("--kernel <FILE|debian|microvm>", "kernel to boot, as for run")
    .option("--modules <DIR>", "modules of --kernel (a lib/modules/RELEASE tree)")
    .option("--cpus <N>", "virtual CPUs", "1")
    .option("--memory <MiB>", "guest memory in MiB", "512")
    .option("--accel <A>", "auto, kvm or tcg", "auto")
    .option("--transport <T>", "share devices: 9p (auto: restores share the snapshot's memory) or virtiofs (each restore copies it)", "auto")
    .option("-q, --quiet", "no progress lines on stderr")
    .option("--json", "print the snapshot's manifest and timings as one JSON object")
    .addHelpText(
      "after",
      "\nThe snapshot records the image's and the kernel's sha256, QEMU's version and the machine options;\n" +
        "run --snapshot refuses one that does not match what it is asked to run. Each restored machine gets\n" +
        "its own entropy, clock and hostname from its job (docs/security.md).\n\n" +
        "Example:\n  a3s-rootfs snapshot rootfs.cpio.gz -o agent.snap\n  a3s-rootfs run --snapshot agent.snap --workspace . -- --task 'fix the tests'",
    )
    .action(
      action(async ({ signal }, image: string, flags: SnapshotFlags) => {
        // On SIGINT, SIGTERM or SIGHUP the signal stops the VM, and the runner exits 128+N.
        const result = await makeSnapshot({
            image,
            output: flags.output as string,
            ...(flags.kernel !== undefined ? { kernel: flags.kernel } : {}),
            ...(flags.modules !== undefined ? { modules: flags.modules } : {}),
            cpus: positiveNumber("--cpus", flags.cpus, { whole: true }) ?? 1,
            memoryMiB: positiveNumber("--memory", flags.memory, { whole: true }) ?? 512,
            accel: oneOf("--accel", flags.accel, ["auto", "kvm", "tcg"] as const) ?? "auto",
            transport: oneOf("--transport", flags.transport, ["auto", "virtiofs", "9p"] as const) ?? "auto",
            progress: flags.quiet || flags.json ? () => {} : (m) => process.stderr.write(`a3s-rootfs: ${m}\n`),
            signal,
          });
        const m = result.manifest;
        if (flags.json) {
          process.stdout.write(JSON.stringify({ path: result.path, bootMs: Math.round(result.bootMs), ...m }) + "\n");
          return 0;
        }
        const total = m.bytes.state + m.bytes.memory + m.bytes.disk;
        process.stdout.write(
          `${result.path}: ${humanBytes(total)} on disk (memory ${humanBytes(m.bytes.memory)} of ${m.machine.memoryMiB} MiB, state ${humanBytes(m.bytes.state)}` +
            `${m.bytes.disk ? `, disk ${humanBytes(m.bytes.disk)}` : ""}); saved in ${m.snapshotMs} ms after a ${Math.round(result.bootMs)} ms boot\n`,
        );
        return 0;
      }),
    );
}
