import { createHash } from "node:crypto";
import { mkdir, mkdtemp, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { A3sError } from "../errors.js";
import { cacheRoot } from "../util/cache-dir.js";
import { DOCTOR_HINT, findExecutable, runTool } from "../util/host-tool.js";
import { runningAsRoot } from "../util/running-as-root.js";
import type { RootfsSource, SourceContext, SourceResult } from "./source.js";
import type { TrimProfile } from "./trim.js";

export interface DebootstrapOptions {
  /** Extra packages (mmdebstrap/debootstrap --include). */
  readonly include?: readonly string[];
  readonly trim?: TrimProfile;
  /** Re-run the bootstrap even if a cached one exists. */
  readonly refresh?: boolean;
}

/**
 * `debootstrap:SUITE[:MIRROR]`: a Debian (or Ubuntu) minbase system made by
 * mmdebstrap (rootless where it can be, writing a tarball with exact
 * ownership), else by debootstrap (needs root). The bootstrap is cached per
 * suite, mirror, packages and architecture, so a rebuild downloads nothing;
 * the tree's files point into the cached tarball. A trim profile then
 * removes what an agent's sandbox never reads (docs/sources.md).
 */
export function debootstrapSource(rest: string, opts: DebootstrapOptions = {}): RootfsSource {
  const colon = rest.indexOf(":");
  const suite = colon < 0 ? rest : rest.slice(0, colon);
  const mirror = colon < 0 ? undefined : rest.slice(colon + 1);
  if (!/^[a-z][a-z0-9.-]*$/.test(suite)) {
    throw new A3sError("EUSAGE", `debootstrap needs a suite name, e.g. debootstrap:bookworm (got ${JSON.stringify(rest)})`);
  }
  const include = [...(opts.include ?? [])].sort();
  for (const p of include) {
    if (!/^[a-z0-9][a-z0-9+.-]*$/.test(p)) throw new A3sError("EUSAGE", `invalid package name ${JSON.stringify(p)}`);
  }
  const trim = opts.trim ?? "minimal";
  return {
    spec: `debootstrap:${rest}`,
    async load(ctx: SourceContext): Promise<SourceResult> {
      const arch = (await runTool("dpkg", ["--print-architecture"])).stdout.trim();
      const tool = findExecutable("mmdebstrap") ? "mmdebstrap" : findExecutable("debootstrap") ? "debootstrap" : undefined;
      if (!tool) throw new A3sError("ETOOL", "neither mmdebstrap nor debootstrap is installed", { hint: `apt-get install mmdebstrap   (${DOCTOR_HINT})` });
      const key = createHash("sha256").update(JSON.stringify({ suite, mirror, include, arch, tool, v: 1 })).digest("hex").slice(0, 16);
      const dir = join(cacheRoot(), "debootstrap");
      const tarball = join(dir, `${suite}-${arch}-${key}.tar`);
      const cached = !opts.refresh && (await stat(tarball).then((s) => s.isFile(), () => false));
      if (!cached) {
        await mkdir(dir, { recursive: true });
        ctx.progress(`bootstrapping ${suite} (minbase${include.length ? ` + ${include.join(",")}` : ""}) with ${tool}; this takes a few minutes`);
        await bootstrap(tool, { suite, mirror, include, arch }, tarball, ctx.epoch, ctx.signal);
      } else {
        ctx.progress(`using the cached ${suite} bootstrap ${tarball}`);
      }
      // Loaded here, not at the top: a build from another source never needs them (CLI start time).
      const [{ openArchiveTree }, { installedPackages }, { trimTree }] = await Promise.all([
        import("../formats/open-archive.js"),
        import("./dpkg-status.js"),
        import("./trim.js"),
      ]);
      const { tree } = await openArchiveTree(tarball, { epoch: ctx.epoch });
      const removed = trimTree(tree, trim);
      const packages = await installedPackages(tree);
      ctx.progress(`${packages.length} packages; trim profile ${trim} removed ${removed.length} entries`);
      return { tree, report: { suite, mirror: mirror ?? null, tool, trim, trimmed: removed.length, packages } };
    },
  };
}

/** Runs the bootstrap into a temporary name beside `tarball` and renames it in when complete. */
async function bootstrap(
  tool: "mmdebstrap" | "debootstrap",
  o: { suite: string; mirror: string | undefined; include: readonly string[]; arch: string },
  tarball: string,
  epoch: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  const work = await mkdtemp(`${tarball}.tmp-`);
  const env = { ...process.env, SOURCE_DATE_EPOCH: String(epoch) };
  try {
    const out = join(work, "rootfs.tar");
    if (tool === "mmdebstrap") {
      const args = ["--variant=minbase", "--quiet", `--architectures=${o.arch}`];
      if (o.include.length) args.push(`--include=${o.include.join(",")}`);
      args.push(o.suite, out);
      if (o.mirror) args.push(o.mirror);
      await runTool("mmdebstrap", args, { env, signal });
    } else {
      if (!runningAsRoot()) {
        throw new A3sError("EPERM", "debootstrap needs root; mmdebstrap can run without it", { hint: "apt-get install mmdebstrap" });
      }
      const root = join(work, "root");
      const args = ["--variant=minbase", `--arch=${o.arch}`];
      if (o.include.length) args.push(`--include=${o.include.join(",")}`);
      args.push(o.suite, root);
      if (o.mirror) args.push(o.mirror);
      await runTool("debootstrap", args, { env, signal });
      await runTool("tar", ["--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", root, "-cf", out, "."], { signal });
    }
    await rename(out, tarball);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
