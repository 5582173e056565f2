import type { Command } from "commander";
import { listEntries } from "../audit/list-entries.js";
import { openInspectTarget } from "../audit/open-target.js";
import { action } from "./command-runner.js";
import { humanBytes, modeString } from "./format.js";

export function registerInspectCommand(program: Command): void {
  program
    .command("inspect")
    .description("list the entries of a rootfs: a directory, or a tar or cpio archive (.gz/.zst)")
    .argument("<target>", "the rootfs to inspect")
    .option("--json", "print one JSON object: {target, entries, bytes, byKind, list: [...]}")
    .action(
      action(async (target: string, flags: { json?: boolean }) => {
        const tree = await openInspectTarget(target);
        const list = await listEntries(tree);
        const byKind: Record<string, number> = {};
        for (const e of list) byKind[e.kind] = (byKind[e.kind] ?? 0) + 1;
        const bytes = tree.contentBytes();
        if (flags.json) {
          process.stdout.write(JSON.stringify({ target, entries: list.length, bytes, byKind, list }) + "\n");
          return;
        }
        const width = Math.max(1, ...list.map((e) => String(e.size).length));
        for (const e of list) {
          const owner = `${e.uid}/${e.gid}`.padEnd(11);
          const size = (e.device ?? String(e.size)).padStart(width);
          const link = e.link ? (e.kind === "hardlink" ? ` => ${e.link}` : ` -> ${e.link}`) : "";
          const hash = e.sha256 ? `  ${e.sha256.slice(0, 12)}` : "";
          process.stdout.write(`${modeString(e.kind, e.mode)} ${owner} ${size} ${e.path}${link}${hash}\n`);
        }
        const kinds = Object.entries(byKind)
          .map(([k, n]) => `${n} ${k}`)
          .join(", ");
        process.stdout.write(`${list.length} entries (${kinds}), ${humanBytes(bytes)} of file content\n`);
      }),
    );
}
