import type { Command } from "commander";
import { debianKernel, debianKernelPackage } from "../boot/debian-kernel.js";
import { action } from "./command-runner.js";

export function registerKernelCommand(program: Command): void {
  program
    .command("kernel")
    .description("show the default guest kernel (the Debian kernel of this host's release) and fetch it into the cache")
    .option("--fetch", "download it now if it is not cached")
    .option("--json", "print one JSON object")
    .action(
      action(async (_ctx, flags: { fetch?: boolean; json?: boolean }) => {
        const pkg = await debianKernelPackage();
        const progress = flags.json ? () => {} : (m: string) => process.stderr.write(`a3s-rootfs: ${m}\n`);
        const bundle = await debianKernel({ progress, offline: !flags.fetch }).catch((e: unknown) => {
          if (flags.fetch) throw e;
          return undefined;
        });
        if (flags.json) {
          process.stdout.write(JSON.stringify({ package: pkg.name, version: pkg.version, cached: Boolean(bundle), bundle: bundle ?? null }) + "\n");
          return;
        }
        process.stdout.write(`package: ${pkg.name} ${pkg.version}\n`);
        if (!bundle) {
          process.stdout.write("cached:  no (run a3s-rootfs kernel --fetch, or any run fetches it)\n");
          return;
        }
        process.stdout.write(`cached:  ${bundle.kernelPath}\nrelease: ${bundle.release}\n`);
        process.stdout.write(`modules: ${bundle.modules.map((m) => m.name).join(" ")}\n`);
      }),
    );
}
