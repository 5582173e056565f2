import type { Command } from "commander";
import { applyChangeSet } from "../boot/change-set-apply.js";
import { action } from "./command-runner.js";
import { humanBytes } from "./format.js";

interface ApplyFlags {
  json?: boolean;
}

export function registerApplyCommand(program: Command): void {
  program
    .command("apply")
    .description("apply a change set saved by `run --workspace-mode overlay --changes FILE` to a workspace directory")
    .argument("<file>", "the change set: a tar with OCI whiteouts (.wh.NAME deletes NAME, .wh..wh..opq empties a directory)")
    .argument("<dir>", "the workspace directory to apply it to")
    .option("--json", "print {written, removed, bytes, finishedEarlier} as one JSON object")
    .addHelpText(
      "after",
      "\nThe whole set is checked before anything is written: no '..', no path through a symlink, nothing but\n" +
        "directories, files, symlinks and whiteouts, PATH_MAX and NAME_MAX. A set that fails a check changes\n" +
        "nothing. Once checked, it is applied whole: an apply killed part way leaves DIR/.a3s-apply, and the next\n" +
        "apply or run on DIR finishes it first (docs/security.md, \"Change sets\"). Ownership is not applied;\n" +
        "modes lose their set-id and sticky bits.\n\n" +
        "Example:\n  a3s-rootfs run rootfs.erofs --workspace . --workspace-mode overlay --changes agent.tar -- --task x\n" +
        "  tar -tvf agent.tar && a3s-rootfs apply agent.tar .",
    )
    .action(
      action(async ({ signal }, file: string, dir: string, flags: ApplyFlags) => {
        const applied = await applyChangeSet(file, dir, { signal });
        if (flags.json) {
          process.stdout.write(JSON.stringify(applied) + "\n");
          return 0;
        }
        if (applied.finishedEarlier) process.stderr.write(`a3s-rootfs: first finished an apply to ${dir} that had been killed after its commit point\n`);
        process.stdout.write(`${dir}: ${applied.written} written (${humanBytes(applied.bytes)}), ${applied.removed} removed\n`);
        return 0;
      }),
    );
}
