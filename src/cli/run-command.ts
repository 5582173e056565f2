import type { Command } from "commander";
import { runRootfs, type RunOptions, type RunResult } from "../boot/run-vm.js";
import { ROOT_VERIFICATION_FAILED } from "../boot/verity-root.js";
import { A3sError } from "../errors.js";
import { checkAgentSettings } from "../layout/apply-guest-config.js";
import { resolveBootTarget } from "./boot-reference.js";
import { action, collect, oneOf, positiveNumber, usage } from "./command-runner.js";

interface RunFlags {
  snapshot?: string;
  warm?: boolean;
  workspace?: string;
  workspaceMode?: string;
  changes?: string;
  tmpfs?: string[];
  scratchDisk?: string;
  skills?: string;
  kernel?: string;
  modules?: string;
  cpus?: string;
  memory?: string;
  memoryDir?: string;
  timeout?: string;
  user?: string;
  env?: string[];
  accel?: string;
  transport?: string;
  virtiofsCache?: string;
  consoleLog?: string;
  rootHash?: string;
  creds?: string;
  insecure?: boolean;
  platform?: string;
  json?: boolean;
  quiet?: boolean;
}


export function registerRunCommand(program: Command): void {
  program
    .command("run")
    .description("boot a rootfs in a QEMU microvm, run its agent, and exit with the agent's status")
    .argument(
      "[image]",
      "a cpio initramfs (.cpio/.gz/.zst), an ext4, erofs or squashfs image, a rootfs directory, or docker://REF " +
        "(an a3s boot image is pulled and booted; a container image is built into a temporary erofs first)",
    )
    .argument("[args...]", "arguments for the agent (after --), replacing the image's")
    .option("--snapshot <DIR>", "restore this snapshot (made by `a3s-rootfs snapshot`) instead of booting; IMAGE may be left out")
    .option("--warm", "restore this image's template from the cache, made on first use, instead of booting")
    .option("--workspace <DIR>", "host directory shared read-write at /workspace")
    .option("--workspace-mode <MODE>", "live (writes go straight to the host) or overlay (writes stay in the guest and come back as one change set when the agent ends)", "live")
    .option("--changes <FILE>", "overlay mode: save the change set (a tar with whiteouts) to FILE instead of applying it; apply it later with `a3s-rootfs apply`")
    .option("--tmpfs <GUESTPATH[:SIZE]>", "a guest-local tmpfs at GUESTPATH (e.g. /workspace/node_modules:2g); nothing in it comes back (repeatable)", collect)
    .option("--scratch-disk <SIZE>", "overlay mode: keep the overlay's writes on a sparse ext4 disk of SIZE (e.g. 8g, 512m) instead of guest memory")
    .option("--skills <DIR>", "host directory shared read-only at /skills")
    .option("--kernel <FILE|debian|microvm>", "kernel to boot: a file, `debian` (Debian's generic kernel) or `microvm` (the one `kernel build` made); default: the microVM kernel when built, else Debian's")
    .option("--modules <DIR>", "modules of --kernel (a lib/modules/RELEASE tree); not needed for built-in drivers")
    .option("--cpus <N>", "virtual CPUs (default: 1, or the snapshot's)")
    .option("--memory <MiB>", "guest memory in MiB (default: 512, or the snapshot's)")
    .option("--memory-dir <DIR>", "keep guest RAM in a file in DIR, a tmpfs mounted with huge=always or a hugetlbfs: 2 MiB host pages where shares would give 4 KiB ones (see docs/boot.md)")
    .option("--timeout <S>", "seconds before the agent gets SIGTERM (then SIGKILL after 10 s)")
    .option("--user <U>", "run the agent as root, nobody, UID or UID:GID (default: the image's)")
    .option("--env <K=V>", "add to the agent's environment (repeatable)", collect)
    .option("--accel <A>", "auto, kvm or tcg", "auto")
    .option("--transport <T>", "shares over auto, virtiofs or 9p (auto: virtio-fs, provisioning virtiofsd if needed; 9p without it)", "auto")
    .option("--virtiofs-cache <MODE>", "virtio-fs caching: auto (default), never, always or metadata; see docs/boot.md")
    .option("--console-log <FILE>", "keep the kernel and init console log")
    .option("--root-hash <HEX>", "an image built with --verity must have this dm-verity root hash (else the boot is refused or stops)")
    .option("--creds <USER:PASSWORD>", "docker://REF: registry credentials (default: ~/.docker/config.json and its credential helpers)")
    .option("--insecure", "docker://REF: allow plain HTTP and unverified TLS to a registry that is not on loopback")
    .option("--platform <OS/ARCH[/VARIANT]>", "docker://REF: the platform the image must be for (default: the host's)")
    .option("-q, --quiet", "no progress lines on stderr")
    .option("--json", "print one JSON object {exitCode, signal, stdout, stderr, accel, transport, kernel, timeline} instead of streaming")
    .addHelpText(
      "after",
      "\nThe command exits with the agent's status (128+N when signal N killed it; 125, 126, 127 when init\n" +
        "could not start it; 123 when the root filesystem failed dm-verity verification), like docker run.\n\nWith --snapshot or --warm the machine is restored where its init waits for a job, and the\n" +
        "run's arguments, environment, user and shares are sent to it: no boot. A snapshot made for another\n" +
        "image, kernel or machine is refused.\n\nExamples:\n  a3s-rootfs run rootfs.cpio.gz --workspace . --skills ~/skills -- --task 'fix the tests'\n" +
        "  a3s-rootfs run rootfs.cpio.gz --warm --workspace . -- --task 'fix the tests'\n" +
        "  a3s-rootfs snapshot rootfs.cpio.gz -o agent.snap && a3s-rootfs run --snapshot agent.snap -- --task x",
    )
    .action(
      action(async ({ signal }, imageArg: string | undefined, argsArg: string[], flags: RunFlags) => runCommand(imageArg, argsArg, flags, signal)),
    );
}

/** --workspace-mode, --changes, --tmpfs and --scratch-disk, checked as typed (runRootfs checks how they fit together). */
function workspaceOptions(flags: RunFlags): Pick<RunOptions, "workspaceMode" | "changesFile" | "tmpfs" | "scratchDiskMiB"> {
  return {
    ...(flags.workspaceMode !== undefined ? { workspaceMode: oneOf("--workspace-mode", flags.workspaceMode, ["live", "overlay"] as const) } : {}),
    ...(flags.changes !== undefined ? { changesFile: flags.changes } : {}),
    ...(flags.tmpfs?.length ? { tmpfs: flags.tmpfs } : {}),
    ...(flags.scratchDisk !== undefined ? { scratchDiskMiB: sizeInMiB("--scratch-disk", flags.scratchDisk) } : {}),
  };
}

/** "8g", "512m", "512" (MiB) as whole MiB. */
function sizeInMiB(flag: string, value: string): number {
  const m = /^([0-9]+)([mMgG]?)$/.exec(value);
  if (!m) throw new A3sError("EUSAGE", `${flag} must be a size like 512m or 8g, got ${JSON.stringify(value)}`);
  return Number(m[1]) * (m[2] === "g" || m[2] === "G" ? 1024 : 1);
}

/**
 * The root hash a verity image must have: --root-hash, or the one a pulled
 * artifact's annotation gives (which the manifest's digest covers). When
 * both are given they must agree: the artifact is not the image pinned.
 */
function pinnedRootHash(
  flag: string | undefined,
  fromArtifact: string | undefined,
  image: string | undefined,
): { rootHash?: string; rootHashSource?: "registry" } {
  if (fromArtifact === undefined) return flag ? { rootHash: flag } : {};
  if (flag !== undefined && flag.toLowerCase() !== fromArtifact) {
    throw new A3sError("EVERITY", `refusing to boot ${image}: its artifact's verity root hash ${fromArtifact} is not the pinned ${flag.toLowerCase()}`, {
      subject: image ?? "",
      hint: "check the reference, or pin it by digest (docker://REPO@sha256:...)",
    });
  }
  return flag !== undefined ? { rootHash: flag } : { rootHash: fromArtifact, rootHashSource: "registry" };
}

/**
 * IMAGE and the agent's arguments. With --snapshot the image is optional:
 * `run --snapshot DIR -- --task x` has none, so a first operand counts as
 * the image only when it came before `--`.
 */
function splitOperands(image: string | undefined, args: string[], snapshot: boolean): { image: string | undefined; args: string[] } {
  if (!snapshot || image === undefined) return { image, args };
  const all = [image, ...args];
  const dd = process.argv.indexOf("--");
  const afterDashes = dd >= 0 ? process.argv.length - dd - 1 : 0;
  return all.length > afterDashes ? { image: all[0], args: all.slice(1) } : { image: undefined, args: all };
}

/** `run`: checks what was typed, resolves the image (a docker:// reference is pulled or built), boots it, and reports how the agent ended. */
async function runCommand(imageArg: string | undefined, argsArg: string[], flags: RunFlags, signal: AbortSignal): Promise<number> {
  const { image, args } = splitOperands(imageArg, argsArg, flags.snapshot !== undefined);
  if (image === undefined && flags.snapshot === undefined) throw new A3sError("EUSAGE", "run needs an IMAGE (or --snapshot DIR)");
  // Every value typed on the command line is checked before the host is probed or a VM started.
  usage(() => checkAgentSettings({ args, ...(flags.env ? { env: flags.env } : {}), ...(flags.user ? { user: flags.user } : {}) }));
  // --cpus and --memory are left out when not given: a snapshot brings its own.
  const options = {
    ...(flags.cpus !== undefined ? { cpus: positiveNumber("--cpus", flags.cpus) as number } : {}),
    ...(flags.memory !== undefined ? { memoryMiB: positiveNumber("--memory", flags.memory) as number } : {}),
    ...(flags.memoryDir !== undefined ? { memoryDir: flags.memoryDir } : {}),
    ...(flags.timeout ? { timeoutS: positiveNumber("--timeout", flags.timeout) as number } : {}),
    accel: oneOf("--accel", flags.accel, ["auto", "kvm", "tcg"] as const) ?? "auto",
    transport: oneOf("--transport", flags.transport, ["auto", "virtiofs", "9p"] as const) ?? "auto",
    ...(flags.virtiofsCache ? { virtiofs: { cache: oneOf("--virtiofs-cache", flags.virtiofsCache, ["auto", "never", "always", "metadata"] as const) } } : {}),
  };
  const quiet = flags.quiet || flags.json;
  const progress = quiet ? () => {} : (m: string) => process.stderr.write(`a3s-rootfs: ${m}\n`);
  // docker://REF: an a3s boot image is pulled into the store (a container image is built first).
  const target =
    image === undefined
      ? undefined
      : await resolveBootTarget(image, {
          ...(flags.creds ? { creds: flags.creds } : {}),
          ...(flags.insecure ? { insecure: true } : {}),
          ...(flags.platform ? { platform: flags.platform } : {}),
          progress,
          warn: (m) => process.stderr.write(`a3s-rootfs: warning: ${m}\n`),
          signal,
        });
  let result;
  try {
    const rootHash = pinnedRootHash(flags.rootHash, target?.pulled?.verity?.rootHash, image);
    // On SIGINT, SIGTERM or SIGHUP the signal stops the VM and its helpers, and the runner exits 128+N.
    result = await runRootfs({
      ...(target !== undefined ? { image: target.path } : {}),
      ...(flags.snapshot !== undefined ? { snapshot: flags.snapshot } : {}),
      ...(flags.warm ? { warm: true } : {}),
      ...(args.length ? { args } : {}),
      ...(flags.workspace ? { workspace: flags.workspace } : {}),
      ...workspaceOptions(flags),
      ...(flags.skills ? { skills: flags.skills } : {}),
      ...(flags.kernel ? { kernel: flags.kernel } : {}),
      ...(flags.modules ? { modules: flags.modules } : {}),
      ...options,
      ...(flags.user ? { user: flags.user } : {}),
      ...(flags.env ? { env: flags.env } : {}),
      ...(flags.consoleLog ? { consoleLog: flags.consoleLog } : {}),
      ...rootHash,
      ...(flags.json ? {} : { stdout: process.stdout, stderr: process.stderr }),
      progress,
      signal,
    });
  } finally {
    await target?.dispose();
  }
  return reportRun(result, flags);
}

/** What the run says on stderr (or prints as JSON), and the exit status: the agent's, or 1 for an unapplied change set after a success. */
function reportRun(result: RunResult, flags: RunFlags): number {
  if (result.changes?.outcome === "failed") {
    process.stderr.write(`a3s-rootfs: the change set was not applied: ${result.changes.error}\n`);
  }
  if (flags.json) {
    process.stdout.write(JSON.stringify(result) + "\n");
  } else if (result.exitCode === ROOT_VERIFICATION_FAILED && result.setupError) {
    process.stderr.write(`a3s-rootfs: ${result.setupError} (status ${ROOT_VERIFICATION_FAILED})\n`);
  } else if (result.setupError) {
    process.stderr.write(`a3s-rootfs: the agent could not start (status ${result.exitCode}): ${result.setupError}\n`);
  } else if (result.timedOut) {
    process.stderr.write(`a3s-rootfs: the agent timed out and ended with status ${result.exitCode}\n`);
  }
  // A change set that could not be applied is the run's failure even when the agent succeeded.
  return result.changes?.outcome === "failed" && result.exitCode === 0 ? 1 : result.exitCode;
}
