#!/usr/bin/env node
import { Command } from "commander";
import { packageManifest } from "../util/package-root.js";

const program = new Command()
  .name("a3s-rootfs")
  .description("Build, inspect and boot minimal read-only MicroVM root filesystems for AI coding agents")
  // The installed package's own version, read at run time.
  .version(packageManifest().version)
  .showHelpAfterError()
  // Options after a subcommand's name are that subcommand's: `kernel build --json` is build's --json.
  .enablePositionalOptions()
  .configureOutput({ outputError: (s, write) => write(`a3s-rootfs: ${s}`) })
  .exitOverride((err) => {
    // Usage errors exit 2, like other Unix tools; --help and --version exit 0.
    process.exit(err.exitCode === 0 ? 0 : 2);
  });

// A reader that stops early (`| head`) is not an error; a run keeps going so
// its VM is still shut down and cleaned up properly.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code !== "EPIPE") throw e;
  });
}

/**
 * Each command's module, loaded only when it is used. A command module pulls
 * in everything its action needs (the builder, the VM runner, the audit), so
 * loading all of them costs more than a small build takes; a run names one
 * command, and only that one is registered. Help, --version and an unknown
 * name register them all (in this order, which is the order help lists).
 */
const COMMANDS: Record<string, () => Promise<(program: Command) => void>> = {
  demo: async () => (await import("./demo-command.js")).registerDemoCommand,
  build: async () => (await import("./build-command.js")).registerBuildCommand,
  run: async () => (await import("./run-command.js")).registerRunCommand,
  snapshot: async () => (await import("./snapshot-command.js")).registerSnapshotCommand,
  apply: async () => (await import("./apply-command.js")).registerApplyCommand,
  inspect: async () => (await import("./inspect-command.js")).registerInspectCommand,
  kernel: async () => (await import("./kernel-command.js")).registerKernelCommand,
  cache: async () => (await import("./cache-command.js")).registerCacheCommand,
  virtiofsd: async () => (await import("./virtiofsd-command.js")).registerVirtiofsdCommand,
  doctor: async () => (await import("./doctor-command.js")).registerDoctorCommand,
};

async function main(): Promise<void> {
  /** The command a run names: its first argument (`a3s-rootfs --help build` names none and lists them all). */
  const named = process.argv[2];
  const load = named !== undefined && Object.hasOwn(COMMANDS, named) ? [named] : Object.keys(COMMANDS);
  for (const register of await Promise.all(load.map((n) => (COMMANDS[n] as () => Promise<(program: Command) => void>)()))) register(program);
  await program.parseAsync(process.argv);
}

// No top-level await: the installed CLI is this module bundled as CommonJS
// (scripts/bundle-cli.mjs), which has none. A rejection is left unhandled on
// purpose, so node reports it and exits 1, as a top-level await would.
//
// Once the command is done and its output has left, the process exits (with
// the status the command set) instead of letting node tear the whole heap
// down first: after a build, freeing a few hundred MB of JavaScript heap page
// by page held the exit back 100-150 ms (strace: the main thread's munmap
// calls between the last line of output and exit_group). Every action awaits
// its own work and cleanup before it returns; what it wrote to stdout or
// stderr may still be queued, though (a pipe whose reader is slow takes 64
// KiB at a time), so the exit waits for both to be flushed.
void main().then(async () => {
  await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
  process.exit();
});

/** Resolves once everything written to `stream` so far has been handed to the OS (writes complete in order). */
function flushed(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (stream.writableLength === 0) resolve();
    else stream.write("", () => resolve());
  });
}
