import { findExecutable, hostCommand, type ToolCommand } from "../util/host-tool.js";
import { DEBIAN_13_SUITES, provisionBundle, type BundleSpec } from "./provision-bundle.js";
import { bundleCommand, newestVerifiedBundle, type BundleKind } from "./tool-bundle.js";

/**
 * The mkfs tools that read a tar stream, provisioned from Debian 13 where
 * the host's cannot (Debian 12 has erofs-utils 1.5 and squashfs-tools
 * 4.5.1). With them the erofs and squashfs outputs are built straight from
 * the tree's tar stream, with no staging copy on disk (formats/erofs,
 * formats/squashfs say why each version matters).
 */
export type ImageToolName = "mkfs.erofs" | "mksquashfs";

/** Per tool, the Debian 13 bundle that provides it: the program's package and the packages of every library it links. */
export const IMAGE_TOOL_BUNDLES: Readonly<Record<ImageToolName, BundleSpec>> = {
  "mkfs.erofs": {
    name: "erofs-utils",
    // A damaged bundle is replaced by the next build that needs it (provisionBundle checks the one it finds).
    refetch: "any a3s-rootfs build with an erofs output",
    suites: DEBIAN_13_SUITES,
    // liblz4-1 needs libxxhash0, libselinux1 needs libpcre2-8-0.
    packages: ["erofs-utils", "libc6", "libdeflate0", "liblz4-1", "liblzma5", "libselinux1", "libpcre2-8-0", "libuuid1", "libxxhash0", "libzstd1", "zlib1g"],
    program: { package: "erofs-utils", path: "usr/bin/mkfs.erofs", name: "mkfs.erofs" },
    versionArgs: ["--version"],
    versionPattern: /^mkfs\.erofs .*\d+\.\d+/,
    errorCode: "ETOOL",
  },
  mksquashfs: {
    name: "squashfs-tools",
    refetch: "any a3s-rootfs build with a squashfs output",
    suites: DEBIAN_13_SUITES,
    packages: ["squashfs-tools", "libc6", "liblz4-1", "libxxhash0", "liblzma5", "liblzo2-2", "libzstd1", "zlib1g"],
    program: { package: "squashfs-tools", path: "usr/bin/mksquashfs", name: "mksquashfs" },
    versionArgs: ["-version"],
    versionPattern: /^mksquashfs version \d/,
    errorCode: "ETOOL",
  },
};

export function imageToolKind(tool: ImageToolName): BundleKind {
  return IMAGE_TOOL_BUNDLES[tool];
}

/** The newest provisioned copy of `tool` in the cache, verified file by file; undefined when there is none. */
export async function cachedImageTool(cache: string, tool: ImageToolName): Promise<{ command: ToolCommand; version: string } | undefined> {
  const spec = IMAGE_TOOL_BUNDLES[tool];
  const found = await newestVerifiedBundle(cache, spec);
  if (!found) return undefined;
  return { command: bundleCommand(found.dir, found.manifest, spec.program.name), version: found.manifest.version };
}

/** Fetches `tool` from Debian 13 into the cache (kept when the same versions are there and intact). */
export function provisionImageTool(cache: string, tool: ImageToolName, progress: (m: string) => void): Promise<string> {
  return provisionBundle(IMAGE_TOOL_BUNDLES[tool], cache, progress);
}

/**
 * The program a writer runs for `tool`: the host's when `hostIsEnough` says
 * it reads a tar stream, else the verified copy in the cache, else (with
 * `provision`) one fetched now, else the host's all the same (the writer
 * then falls back to a staging copy, and says what that cannot hold).
 * Undefined when there is neither a host program nor a cached one.
 */
export async function resolveImageTool(
  tool: ImageToolName,
  opts: {
    cache: string;
    provision: boolean;
    hostIsEnough: (host: ToolCommand) => Promise<boolean>;
    progress?: (m: string) => void;
    warn?: (m: string) => void;
  },
): Promise<ToolCommand | undefined> {
  const hostPath = findExecutable(tool);
  const host = hostPath ? hostCommand(hostPath) : undefined;
  if (host && (await opts.hostIsEnough(host))) return host;
  const spec = IMAGE_TOOL_BUNDLES[tool];
  const cached = await cachedImageTool(opts.cache, tool).catch((e: unknown) => {
    // A damaged bundle is never run; provisioning below replaces it, else the error stands.
    if (!opts.provision) throw e;
    opts.warn?.(`${e instanceof Error ? e.message : String(e)}; fetching a fresh copy`);
    return undefined;
  });
  if (cached) return cached.command;
  if (!opts.provision) return host;
  opts.progress?.(`${tool}: the host's ${spec.name} cannot read a tar stream; provisioning ${spec.name} from Debian 13 into the cache, once`);
  try {
    await provisionImageTool(opts.cache, tool, opts.progress ?? (() => {}));
  } catch (e) {
    // Without it the writer stages a copy on disk: slower, and exact only as root.
    opts.warn?.(`cannot provision ${spec.name} from Debian 13 (${e instanceof Error ? e.message : String(e)}); using the host's ${tool} with a staging copy`);
    return host;
  }
  return (await cachedImageTool(opts.cache, tool))?.command;
}
