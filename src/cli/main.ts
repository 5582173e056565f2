#!/usr/bin/env node
import { Command } from "commander";
import { packageManifest } from "../util/package-root.js";
import { registerApplyCommand } from "./apply-command.js";
import { registerBuildCommand } from "./build-command.js";
import { registerCacheCommand } from "./cache-command.js";
import { registerDemoCommand } from "./demo-command.js";
import { registerDoctorCommand } from "./doctor-command.js";
import { registerInspectCommand } from "./inspect-command.js";
import { registerKernelCommand } from "./kernel-command.js";
import { registerRunCommand } from "./run-command.js";
import { registerSnapshotCommand } from "./snapshot-command.js";
import { registerVirtiofsdCommand } from "./virtiofsd-command.js";

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

registerDemoCommand(program);
registerBuildCommand(program);
registerRunCommand(program);
registerSnapshotCommand(program);
registerApplyCommand(program);
registerInspectCommand(program);
registerKernelCommand(program);
registerCacheCommand(program);
registerVirtiofsdCommand(program);
registerDoctorCommand(program);

await program.parseAsync(process.argv);
