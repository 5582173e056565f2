import type { Command } from "commander";
import { stat } from "node:fs/promises";
import { debianKernel } from "../boot/debian-kernel.js";
import { debianKernelPackage } from "../boot/debian-kernel-package.js";
import { debianKernelOrigin } from "../boot/kernel-bundle.js";
import { configHash, loadKernelConfig } from "../boot/kernel-config.js";
import { loadKernelPatches } from "../boot/kernel-patches.js";
import { listMicrovmKernels } from "../boot/microvm-kernel-cache.js";
import { action } from "./command-runner.js";
import { humanBytes } from "./format.js";
import { registerKernelBuildCommand } from "./kernel-build-command.js";

/** One line of `kernel --json`'s list. */
interface KernelEntry {
  kind: "a3s-microvm" | "debian";
  /** How `run --json` names it (RunResult.kernel). */
  origin: string;
  /** The kernel release (uname -r in the guest). */
  version: string;
  path: string | null;
  bytes: number | null;
  cached: boolean;
  /** Whether the guest loads modules with it: Debian's kernel has its virtio and filesystem drivers as modules. */
  modulesNeeded: boolean;
  /** a3s-microvm: built from this a3s-rootfs's fragments (only those are booted by default). */
  current?: boolean;
  sourceVersion?: string;
  configHash?: string;
}

export function registerKernelCommand(program: Command): void {
  const kernel = program
    .command("kernel")
    .description("list the guest kernels (built microVM kernels and Debian's generic kernel); `kernel build` builds the microVM kernel")
    // `kernel build --json` is build's --json, not this command's (main.ts enables it for the program too).
    .enablePositionalOptions()
    .option("--fetch", "download Debian's kernel now if it is not cached")
    .option("--json", "print one JSON object {default, kernels: [{kind, origin, version, path, bytes, cached, modulesNeeded}]}")
    .addHelpText(
      "after",
      "\nWhich kernel `run` boots, first match wins:\n" +
        "  1. --kernel FILE;\n" +
        "  2. the microVM kernel built by `a3s-rootfs kernel build` from this version's kernel/config\n" +
        "     fragments (every driver built in, no modules; boots several times faster);\n" +
        "  3. Debian's generic kernel of this host's release, fetched with apt-get download on first use,\n" +
        "     with the modules the guest needs.\n" +
        "`run` says which in its progress line and in --json (\"kernel\").",
    )
    .action(
      action(async (_ctx, flags: { fetch?: boolean; json?: boolean }) => {
        const progress = flags.json ? () => {} : (m: string) => process.stderr.write(`a3s-rootfs: ${m}\n`);
        const hash = configHash(await loadKernelConfig(), await loadKernelPatches());
        const built: KernelEntry[] = (await listMicrovmKernels()).map((k) => ({
          kind: "a3s-microvm",
          origin: k.origin,
          version: k.release,
          path: k.path,
          bytes: k.bytes,
          cached: true,
          modulesNeeded: false,
          current: k.configHash === hash,
          sourceVersion: k.sourceVersion,
          configHash: k.configHash,
        }));
        const pkg = await debianKernelPackage();
        const bundle = await debianKernel({ progress, offline: !flags.fetch }).catch((e: unknown) => {
          if (flags.fetch) throw e;
          return undefined;
        });
        const debian: KernelEntry = {
          kind: "debian",
          origin: bundle?.origin ?? debianKernelOrigin(pkg),
          version: bundle?.release ?? pkg.name.replace(/^linux-image-/, ""),
          path: bundle?.kernelPath ?? null,
          bytes: bundle ? (await stat(bundle.kernelPath)).size : null,
          cached: Boolean(bundle),
          modulesNeeded: true,
        };
        const kernels = [...built, debian];
        // What run picks without --kernel (resolve-kernel.ts): the newest current build, else Debian's.
        const chosen = built.find((k) => k.current) ?? debian;
        if (flags.json) {
          process.stdout.write(JSON.stringify({ default: chosen.origin, kernels }) + "\n");
          return;
        }
        for (const k of kernels) {
          const mark = k === chosen ? "*" : " ";
          const what = k.kind === "debian" ? "Debian generic, modules" : `microVM, built in${k.current ? "" : ", other fragments (not used)"}`;
          const where = k.path ? `${humanBytes(k.bytes ?? 0)}  ${k.path}` : "not cached (a3s-rootfs kernel --fetch, or any run fetches it)";
          process.stdout.write(`${mark} ${k.origin}\n    ${k.version}; ${what}; ${where}\n`);
        }
        if (!built.some((k) => k.current)) {
          process.stdout.write("no microVM kernel is built: `a3s-rootfs kernel build` makes one (minutes, once)\n");
        }
      }),
    );
  registerKernelBuildCommand(kernel);
}
