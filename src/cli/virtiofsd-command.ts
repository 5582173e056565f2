import type { Command } from "commander";
import { listBundles } from "../boot/virtiofsd-bundle.js";
import { provisionVirtiofsd } from "../boot/virtiofsd-provision.js";
import { cachedVirtiofsd, findHostVirtiofsd, type Virtiofsd } from "../boot/virtiofsd.js";
import { cacheRoot } from "../util/cache-dir.js";
import { action } from "./command-runner.js";

export function registerVirtiofsdCommand(program: Command): void {
  program
    .command("virtiofsd")
    .description("show the virtiofsd that runs share over virtio-fs with, and provision one from Debian 13 when the host has none")
    .option("--fetch", "when the host has no virtiofsd: fetch the current one from Debian 13 into the cache (kept when unchanged)")
    .option("--json", "print one JSON object")
    .addHelpText(
      "after",
      "\nThe host's virtiofsd is used where it is packaged (Debian 13: apt-get install virtiofsd). Otherwise\n" +
        "virtiofsd, Debian 13's loader and the libraries it needs are fetched with a private apt configuration\n" +
        "(signatures checked against debian-archive-keyring), never installed, and verified on every use.",
    )
    .action(
      action(async (_ctx, flags: { fetch?: boolean; json?: boolean }) => {
        const progress = flags.json ? () => {} : (m: string) => process.stderr.write(`a3s-rootfs: ${m}\n`);
        const cache = cacheRoot();
        let found: Virtiofsd | undefined = await findHostVirtiofsd(progress);
        if (!found) {
          if (flags.fetch) await provisionVirtiofsd(cache, progress);
          found = await cachedVirtiofsd(cache);
        }
        const manifest = found?.origin === "cache" ? (await listBundles(cache))[0]?.manifest : undefined;
        if (flags.json) {
          process.stdout.write(
            JSON.stringify({
              found: Boolean(found),
              origin: found?.origin ?? null,
              path: found?.path ?? null,
              version: found?.version ?? null,
              packages: manifest?.packages ?? null,
            }) + "\n",
          );
          return found ? 0 : 1;
        }
        if (!found) {
          process.stdout.write("virtiofsd: none (run a3s-rootfs virtiofsd --fetch, or any run with shares provisions it)\n");
          return 1;
        }
        process.stdout.write(`virtiofsd: ${found.version} (${found.origin === "host" ? "the host's" : "provisioned, verified"})\n`);
        process.stdout.write(`path:      ${found.path}\n`);
        for (const p of manifest?.packages ?? []) process.stdout.write(`package:   ${p.name} ${p.version}  sha256:${p.sha256}\n`);
        return 0;
      }),
    );
}
