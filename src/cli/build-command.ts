import type { Command } from "commander";
import { RootfsBuilder, type BuildResult } from "../builder/rootfs-builder.js";
import { A3sError } from "../errors.js";
import { parseVeritySalt } from "../formats/verity/params.js";
import { checkAgentSettings } from "../layout/apply-guest-config.js";
import { DEFAULT_LAYOUT, resolveLayout, type GuestLayout } from "../layout/index.js";
import { checkOutputTargets } from "../outputs/output-target.js";
import { VERITY_FORMATS } from "../outputs/verity-output.js";
import { parseOutputSpec } from "../outputs/write-outputs.js";
import { findAgentBinary } from "../programs/index.js";
import { parseSourceSpec } from "../sources/parse-source.js";
import { action, collect, flagsGiven, oneOf, refuseBoth, usage } from "./command-runner.js";
import { withOutputFlags } from "./output-flags.js";
import { humanBytes } from "./format.js";

interface BuildFlags {
  output?: string[];
  agent?: string;
  agentPath?: string;
  allowDynamicAgent?: boolean;
  dns?: string[] | false;
  hostname?: string;
  init?: string | false;
  allowDynamicInit?: boolean;
  force?: boolean;
  verity?: boolean;
  veritySalt?: string;
  agentArg?: string[];
  agentArgs?: string;
  env?: string[];
  user?: string;
  links?: string;
  include?: string;
  trim?: string;
  platform?: string;
  creds?: string;
  insecure?: boolean;
  layerCompression?: string;
  erofsCompression?: string;
  json?: boolean;
  cache?: boolean;
}

export function registerBuildCommand(program: Command): void {
  const cmd = program
    .command("build")
    .description("build a rootfs from SOURCE (default: scratch) and write each output")
    .argument(
      "[source]",
      "where the tree comes from: scratch, busybox[:FILE], debootstrap:SUITE[:MIRROR], docker://REF, oci:DIR[:REF], docker-archive:FILE[:REF]",
      "scratch",
    )
    .option(
      "-o, --output <FORMAT:PATH>",
      "write an output; FORMAT: dir, tar, cpio (.gz/.zst), ext4, erofs, squashfs, oci (oci:DIR[:TAG]); push with docker://REF (an OCI image) " +
        "or erofs|ext4|squashfs|cpio:docker://REF (a boot image artifact) (repeatable; default dir:rootfs)",
      collect,
    )
    .option("--agent <FILE>", "the agent binary (default: searched, see findAgentBinary)")
    .option("--agent-path <GUESTPATH>", "where the agent goes in the guest", DEFAULT_LAYOUT.agentPath)
    .option("--allow-dynamic-agent", "accept a dynamically linked agent (its libraries must be in the rootfs)")
    .option("--dns <IP>", "nameserver for /etc/resolv.conf (repeatable; default 8.8.8.8 and 8.8.4.4)", collect)
    .option("--no-dns", "write /etc/resolv.conf with no nameserver")
    .option("--hostname <NAME>", "the guest's hostname", DEFAULT_LAYOUT.hostname)
    .option("--init <FILE>", "use this static program as /sbin/init instead of the built-in A3S init")
    .option("--allow-dynamic-init", "accept a dynamically linked --init (its libraries must be in the rootfs)")
    .option("--no-init", "leave the init out (for a kernel or VMM that brings its own)")
    .option("--agent-arg <ARG>", "an argument baked into the guest config for the agent (repeatable, in order)", collect)
    .option("--agent-args <ARGS>", "agent arguments as one string, split on whitespace")
    .option("--env <K=V>", "an environment entry baked in for the agent (repeatable)", collect)
    .option("--user <U>", "run the agent as root (default), nobody, UID or UID:GID")
    .option("--links <KIND>", "busybox: applet links as symlink or hardlink", "symlink")
    .option("--include <PKGS>", "debootstrap: extra packages, comma-separated")
    .option("--trim <PROFILE>", "debootstrap: none, docs or minimal (see docs/sources.md)", "minimal")
    .option("--platform <OS/ARCH[/VARIANT]>", "images: the platform to pick from a multi-platform image (default: the host's)")
    .option("--creds <USER:PASSWORD>", "registries: credentials (default: ~/.docker/config.json and its credential helpers)")
    .option("--insecure", "registries: allow plain HTTP and unverified TLS to a registry that is not on loopback")
    .option("--layer-compression <C>", "oci:DIR and docker://REF outputs: the layer as gzip (default), zstd or none; a pushed cpio too")
    .option("--erofs-compression <C>", "erofs outputs: lz4hc (default), lz4 or none (a larger image that builds fastest and boots fastest without KVM)")
    .option("--force", "replace what a3s-rootfs did not write at an output path (a non-empty directory, a file where a directory goes); never /, system directories, the current directory or home")
    .option("--verity", "append a dm-verity hash tree (sha256, 4 KiB blocks) to erofs, squashfs and ext4 outputs, pushed ones too; run then verifies every block the guest reads")
    .option("--verity-salt <HEX>", "the verity salt, hex (or - for none); default: derived from the tree, so the same build gives the same root hash")
    .option("--no-cache", "build every output even when the build cache holds it (and store nothing there); see a3s-rootfs cache ls")
    .option("--json", "print one JSON object: {source, entries, outputs: [{format, path, bytes, sha256, verity?, fromCache?, digest?, reference?, pushed?}], durationMs}")
    .addHelpText(
      "after",
      "\nExamples:\n  a3s-rootfs build --agent ./a3s-box-code -o cpio:rootfs.cpio.gz -o erofs:rootfs.erofs\n" +
        "  SOURCE_DATE_EPOCH=0 a3s-rootfs build -o tar:rootfs.tar --json",
    );
  const given = flagsGiven(cmd, ["init", "no-init", "dns", "no-dns"]);
  cmd.action(action(async ({ signal }, source: string, flags: BuildFlags) => buildCommand(source, flags, given, signal)));
}

/** `build`: checks everything typed before any work (a mistake exits 2 at once), then builds and reports each output. */
async function buildCommand(source: string, flags: BuildFlags, given: ReturnType<typeof flagsGiven>, signal: AbortSignal): Promise<void> {
  // Every value typed on the command line is checked before any work: a mistake exits 2 at once.
  refuseBoth(given, "init", "no-init");
  refuseBoth(given, "dns", "no-dns");
  const src = usage(() =>
    parseSourceSpec(source, {
      appletLinks: oneOf("--links", flags.links, ["symlink", "hardlink"] as const) ?? "symlink",
      ...(flags.include ? { include: flags.include.split(",").filter(Boolean) } : {}),
      trim: oneOf("--trim", flags.trim, ["none", "docs", "minimal"] as const) ?? "minimal",
      ...(flags.platform ? { platform: flags.platform } : {}),
      ...(flags.creds ? { creds: flags.creds } : {}),
      ...(flags.insecure ? { insecure: true } : {}),
    }),
  );
  const compression = oneOf("--layer-compression", flags.layerCompression, ["gzip", "zstd", "none"] as const);
  const erofsCompression = oneOf("--erofs-compression", flags.erofsCompression, ["lz4hc", "lz4", "none"] as const);
  const outputs = (flags.output ?? ["dir:rootfs"]).map((spec) =>
    withOutputFlags(usage(() => parseOutputSpec(spec)), { compression, erofsCompression, creds: flags.creds, insecure: flags.insecure }),
  );
  if (erofsCompression && !outputs.some((o) => o.format === "erofs")) {
    throw new A3sError("EUSAGE", "--erofs-compression needs an erofs output (-o erofs:PATH)");
  }
  if (flags.veritySalt !== undefined && !flags.verity) throw new A3sError("EUSAGE", "--verity-salt needs --verity");
  const veritySalt = flags.veritySalt === undefined ? undefined : usage(() => parseVeritySalt(flags.veritySalt as string));
  if (flags.verity && !outputs.some((o) => VERITY_FORMATS.includes(o.format))) {
    throw new A3sError("EUSAGE", "--verity needs an erofs, squashfs or ext4 output (-o erofs:PATH ...): the hash tree is appended to a block-device image");
  }
  const layout: Partial<GuestLayout> = {
    ...(flags.agentPath ? { agentPath: flags.agentPath } : {}),
    ...(flags.hostname ? { hostname: flags.hostname } : {}),
    ...(flags.dns === false ? { dns: [] } : flags.dns ? { dns: flags.dns } : {}),
  };
  usage(() => resolveLayout(layout));
  const agentArgs = [...(flags.agentArgs ? flags.agentArgs.split(/\s+/).filter(Boolean) : []), ...(flags.agentArg ?? [])];
  usage(() => checkAgentSettings({ args: agentArgs, ...(flags.env ? { env: flags.env } : {}), ...(flags.user ? { user: flags.user } : {}) }));
  await checkOutputTargets(outputs, { force: flags.force ?? false });

  // Container images name their own agent; otherwise one is searched for.
  const agent = flags.agent || !src.providesAgent ? await findAgentBinary(flags.agent ? { path: flags.agent } : {}) : undefined;
  const builder = new RootfsBuilder().withSource(src).withLayout(layout).withForce(flags.force ?? false);
  if (agent) builder.withAgentBinary(agent, { allowDynamic: flags.allowDynamicAgent ?? false });
  if (!flags.json && process.stderr.isTTY) builder.onProgress((m) => process.stderr.write(`a3s-rootfs: ${m}\n`));
  if (flags.init === false) builder.withInit(false);
  else if (typeof flags.init === "string") builder.withInit(flags.init, { allowDynamic: flags.allowDynamicInit ?? false });
  if (agentArgs.length) builder.withAgentArgs(agentArgs);
  if (flags.env) builder.withAgentEnv(flags.env);
  if (flags.user) builder.withAgentUser(flags.user);
  for (const o of outputs) builder.withOutput(o);
  if (flags.verity) builder.withVerity(veritySalt ? { salt: veritySalt } : {});
  builder.withBuildCache(flags.cache !== false);
  const result = await builder.build({ signal });
  printBuildReport(result, flags.json === true);
}

/** The build's report: one JSON object, or a line per output (its digest, verity root hash, or that it came from the cache). */
function printBuildReport(result: BuildResult, json: boolean): void {
  if (json) {
    const { tree: _tree, ...report } = result;
    process.stdout.write(JSON.stringify(report) + "\n");
    return;
  }
  process.stdout.write(`built ${result.source} rootfs: ${result.entries} entries in ${result.durationMs} ms\n`);
  for (const o of result.outputs) {
    const hash = o.sha256 ? `  sha256:${o.sha256}` : "";
    const digest = o.digest ? `  ${o.reference ? "pushed " : ""}manifest ${o.digest}` : "";
    process.stdout.write(`  ${o.format.padEnd(8)} ${o.path}  ${humanBytes(o.bytes)}${hash}${digest}${o.fromCache ? "  (from the build cache)" : ""}\n`);
    const record = o.reference ? "in the artifact's annotations" : `${o.path}.verity.json`;
    if (o.verity) process.stdout.write(`           verity root hash ${o.verity.rootHash} (hash tree at byte ${o.verity.hashOffset}; ${record})\n`);
  }
}
