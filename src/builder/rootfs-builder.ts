import { mkdtemp, realpath, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { A3sError } from "../errors.js";
import { applyGuestLayout, resolveLayout, type GuestLayout } from "../layout/index.js";
import { applyGuestConfig, checkAgentSettings, type AgentLaunch, type AgentSettings } from "../layout/apply-guest-config.js";
import { BuildCache } from "../outputs/build-cache.js";
import { toolIdentity } from "../outputs/tool-identity.js";
import type { OutputContext, OutputFormat, OutputResult, OutputSpec } from "../outputs/output.js";
import { checkOutputTargets, checkReplaceable, type OutputTarget } from "../outputs/output-target.js";
import { writeOutputs } from "../outputs/write-outputs.js";
import { checkGuestProgram, readGuestProgram, type GuestProgramRole } from "../programs/index.js";
import { parseSourceSpec } from "../sources/parse-source.js";
import type { RootfsSource, SourceResult } from "../sources/source.js";
import { bytesContent, sourceDateEpoch, type ContentRef, type MetadataInit, type RootfsTree } from "../tree/index.js";
import { cacheRoot } from "../util/cache-dir.js";
import { removeTree } from "../util/remove-tree.js";
import { pausePoint } from "../util/test-pause.js";
import { buildInputs, isCacheable, outputKey, type BuildInputs } from "./build-key.js";

export interface BuildResult {
  readonly source: string;
  /** Names in the tree, the root included. */
  readonly entries: number;
  readonly outputs: OutputResult[];
  readonly durationMs: number;
  /** What the source reported (e.g. an image digest, a package manifest), if anything. */
  readonly sourceReport?: Readonly<Record<string, unknown>>;
  /** The tree the outputs were written from; absent when every output came from the build cache (nothing was built). */
  readonly tree?: RootfsTree;
}

/** File content for `withFile`: text, bytes, or a file on the host read when an output is written. */
export type FileInput = string | Uint8Array | { readonly hostPath: string };

/** Options of one `build()` or `buildTree()` call. */
export interface BuildOptions {
  /**
   * Cancels the build. Whatever it was doing stops (downloads, host tools,
   * writes), every temporary and staging file is removed, and the promise
   * rejects with the signal's reason once all of that is done. An output
   * already published stays; the one being written is never published.
   */
  readonly signal?: AbortSignal;
}

/** What the checks before any work found: the resolved layout and the programs to install. */
interface Checked {
  readonly layout: GuestLayout;
  readonly agent: ContentRef | undefined;
  readonly init: ContentRef | undefined;
}

/**
 * Builds an A3S guest rootfs: a source tree, the A3S layer on top (layout,
 * essential files, agent), extra files, then every requested output.
 *
 * ```ts
 * const agent = await findAgentBinary();
 * await new RootfsBuilder("/path/to/rootfs").withAgentBinary(agent).build();
 * ```
 */
export class RootfsBuilder {
  private source: RootfsSource = parseSourceSpec("scratch");
  private agent: { path: string; allowDynamic: boolean } | undefined;
  private layout: Partial<GuestLayout> = {};
  /** The guest init: the built-in one unless replaced, or none with false. */
  private init: string | false | undefined;
  private allowDynamicInit = false;
  private force = false;
  private verity: { salt?: Buffer } | undefined;
  private agentSettings: AgentSettings = {};
  private readonly files: { path: string; content: FileInput; meta: MetadataInit }[] = [];
  private readonly outputs: OutputSpec[] = [];
  private epoch: number | undefined;
  private warn: (message: string) => void = (m) => process.stderr.write(`a3s-rootfs: warning: ${m}\n`);
  private progress: (message: string) => void = () => {};
  private buildCache: BuildCache | undefined;

  /** With a path, the build writes the rootfs there as a directory (more outputs with `withOutput`). */
  constructor(dirPath?: string) {
    if (dirPath !== undefined) this.outputs.push({ format: "dir", path: dirPath });
  }

  withSource(source: string | RootfsSource): this {
    this.source = typeof source === "string" ? parseSourceSpec(source) : source;
    return this;
  }

  /** The agent to install at the layout's agent path. It must be a static ELF unless `allowDynamic`. */
  withAgentBinary(path: string, opts: { allowDynamic?: boolean } = {}): this {
    this.agent = { path, allowDynamic: opts.allowDynamic ?? false };
    return this;
  }

  /**
   * The PID 1 put at /sbin/init (default: the built-in A3S init); false
   * leaves it out. It must be a static ELF unless `allowDynamic`: the guest
   * has no libc, and a dynamic init panics the kernel at boot.
   */
  withInit(path: string | false, opts: { allowDynamic?: boolean } = {}): this {
    this.init = path;
    this.allowDynamicInit = opts.allowDynamic ?? false;
    return this;
  }

  /** Arguments baked into the guest config for the agent (argv[1]...). */
  withAgentArgs(args: readonly string[]): this {
    this.agentSettings = { ...this.agentSettings, args: [...args] };
    return this;
  }

  /** NAME=VALUE entries baked into the agent's environment. */
  withAgentEnv(env: readonly string[]): this {
    this.agentSettings = { ...this.agentSettings, env: [...env] };
    return this;
  }

  /** The user the agent runs as: "root" (default), "nobody", "UID" or "UID:GID". */
  withAgentUser(user: string): this {
    this.agentSettings = { ...this.agentSettings, user };
    return this;
  }

  withLayout(layout: Partial<GuestLayout>): this {
    this.layout = { ...this.layout, ...layout };
    return this;
  }

  /** Adds (or replaces) a file in the guest, after the A3S layer. */
  withFile(guestPath: string, content: FileInput, meta: MetadataInit = {}): this {
    this.files.push({ path: guestPath, content, meta });
    return this;
  }

  /** An output: a format and a path, or a whole spec (a tag, a layer compression, a registry to push to). */
  withOutput(format: OutputFormat, path: string): this;
  withOutput(spec: OutputSpec): this;
  withOutput(format: OutputFormat | OutputSpec, path?: string): this {
    this.outputs.push(typeof format === "string" ? { format, path: path as string } : format);
    return this;
  }

  /**
   * Lets outputs replace what a3s-rootfs did not write: a non-empty
   * directory, a directory where a file goes or a file where a directory
   * goes. Without it such a path is refused before any work. The root,
   * system directories, the current directory, home and their ancestors are
   * refused even so.
   */
  withForce(force = true): this {
    this.force = force;
    return this;
  }

  /**
   * Appends a dm-verity hash tree to every erofs, squashfs and ext4 output,
   * so `run` mounts the root through dm-verity and the kernel checks every
   * block the guest reads. The root hash is in the build result
   * (`outputs[].verity`) and in `PATH.verity.json`. The salt defaults to one
   * derived from the tree, so the same build gives the same root hash.
   */
  withVerity(opts: { salt?: Buffer } = {}): this {
    this.verity = opts;
    return this;
  }

  /**
   * Keeps file outputs (tar, cpio, ext4, erofs, squashfs) in the build cache
   * (outputs/build-cache.ts), keyed by everything they are made from, and
   * copies a cached output, verified, instead of building it again. Only
   * sources that can name their content cheaply take part (scratch, oci:);
   * the CLI turns it on unless --no-cache.
   */
  withBuildCache(cache: BuildCache | boolean = true): this {
    this.buildCache = cache === true ? new BuildCache() : cache === false ? undefined : cache;
    return this;
  }

  /** SOURCE_DATE_EPOCH for this build; default: the environment's, else a fixed epoch. */
  withEpoch(epoch: number): this {
    this.epoch = epoch;
    return this;
  }

  onWarning(handler: (message: string) => void): this {
    this.warn = handler;
    return this;
  }

  /** Progress lines for long work (downloads, unpacking); silent by default. */
  onProgress(handler: (message: string) => void): this {
    this.progress = handler;
    return this;
  }

  /** Produces the tree without writing anything. */
  async buildTree(opts: BuildOptions = {}): Promise<RootfsTree> {
    const checked = await this.check();
    return this.inScratch(opts.signal, async (scratchDir) => (await this.produce(checked, opts.signal, scratchDir)).tree);
  }

  /**
   * Builds the tree and writes every output. Everything that can be checked
   * without reading the source is checked first (the layout, the agent's
   * settings, the agent and init binaries, every output path), so a mistake
   * costs no download and no half-done work. The build's temporary files
   * live in one scratch directory under os.tmpdir(), removed when the build
   * ends, however it ends.
   */
  async build(opts: BuildOptions = {}): Promise<BuildResult> {
    const started = performance.now();
    if (this.outputs.length === 0) {
      throw new A3sError("EUSAGE", "nothing to write: give the builder a directory path or call withOutput()");
    }
    const checked = await this.check();
    const targets = await checkOutputTargets(this.outputs, { force: this.force });
    const { signal } = opts;
    const epoch = this.epoch ?? sourceDateEpoch();
    return this.inScratch(signal, async (scratchDir) => {
      const toolCache = { dir: cacheRoot(), provision: true, progress: (m: string) => this.progress(m) };
      const cached = this.buildCache ? await this.fromBuildCache(this.buildCache, checked, targets, epoch, toolCache, signal) : undefined;
      const published = cached?.published ?? new Map<OutputSpec, OutputResult>();
      const toBuild = this.outputs.filter((o) => !published.has(o));
      // writeOutputs answers in the order it was given toBuild.
      const inOrder = (built: readonly OutputResult[]): OutputResult[] => {
        let next = 0;
        return this.outputs.map((o) => published.get(o) ?? (built[next++] as OutputResult));
      };
      if (toBuild.length === 0 && cached?.report) {
        return {
          source: this.source.spec,
          entries: cached.report.entries,
          outputs: inOrder([]),
          durationMs: Math.round(performance.now() - started),
          ...(cached.report.sourceReport ? { sourceReport: cached.report.sourceReport } : {}),
        };
      }
      const { tree, source } = await this.produce(checked, signal, scratchDir, epoch);
      if (!this.agent && !source.agentDefaults?.path) {
        throw new A3sError("ENOAGENT", `no agent: the source ${this.source.spec} names none; call withAgentBinary(await findAgentBinary())`);
      }
      const outputs = await writeOutputs(tree, toBuild, { epoch: tree.epoch, warn: this.warn, signal, scratchDir, force: this.force, verity: this.verity, toolCache });
      if (this.buildCache && cached) {
        for (const [i, r] of outputs.entries()) {
          const spec = toBuild[i] as OutputSpec;
          if (!isCacheable(spec)) continue;
          // Keyed again now: a tool provisioned by this build is part of what made the output.
          const key = outputKey(cached.inputs, spec, await toolIdentity(spec.format, toolCache.dir));
          await this.buildCache.store(key, r, { entries: tree.entryCount, sourceReport: source.report });
        }
      }
      return {
        source: this.source.spec,
        entries: tree.entryCount,
        outputs: inOrder(outputs),
        durationMs: Math.round(performance.now() - started),
        ...(source.report ? { sourceReport: source.report } : {}),
        tree,
      };
    });
  }

  /**
   * Publishes every output the build cache holds, verified, and returns
   * them with the keys of all cacheable outputs (for storing the rest once
   * built). Undefined when the source cannot name its content cheaply.
   */
  private async fromBuildCache(
    cache: BuildCache,
    checked: Checked,
    targets: readonly OutputTarget[],
    epoch: number,
    toolCache: OutputContext["toolCache"],
    signal: AbortSignal | undefined,
  ): Promise<{ inputs: BuildInputs; published: Map<OutputSpec, OutputResult>; report?: { entries: number; sourceReport?: Readonly<Record<string, unknown>> } } | undefined> {
    const sourceId = await this.source.identify?.({ signal });
    if (sourceId === undefined) return undefined;
    const inputs = await buildInputs({
      source: sourceId,
      epoch,
      checked,
      agentSettings: this.agentSettings,
      files: this.files,
      verity: this.verity ? (this.verity.salt?.toString("hex") ?? "derived") : null,
    });
    const published = new Map<OutputSpec, OutputResult>();
    let report: { entries: number; sourceReport?: Readonly<Record<string, unknown>> } | undefined;
    for (const [i, spec] of this.outputs.entries()) {
      const target = targets[i] as OutputTarget;
      if (!isCacheable(spec)) continue;
      const key = outputKey(inputs, spec, await toolIdentity(spec.format, toolCache?.dir));
      const hit = await cache.lookup(key);
      if (!hit) continue;
      const result = await cache.publish(hit, target.path, { signal, beforePublish: () => checkReplaceable(target, { force: this.force }) });
      if (!result) {
        this.warn(`the build cache's copy of ${spec.format}:${spec.path} did not match its recorded SHA-256; it was discarded and the output is built again`);
        continue;
      }
      published.set(spec, result);
      report = { entries: hit.entry.entries, ...(hit.entry.sourceReport ? { sourceReport: hit.entry.sourceReport } : {}) };
    }
    return { inputs, published, ...(report ? { report } : {}) };
  }

  /** The checks that need no source: any failure here stops the build before it starts. */
  private async check(): Promise<Checked> {
    const layout = resolveLayout(this.layout);
    checkAgentSettings(this.agentSettings);
    const agent = this.agent ? await guestProgram(this.agent.path, "agent", this.agent.allowDynamic) : undefined;
    const init =
      this.init === false
        ? undefined
        : this.init === undefined
          ? // The built-in init goes in as the bytes that were checked against its checksum, not as a path read again later.
            bytesContent(readGuestProgram("init"))
          : await guestProgram(this.init, "init", this.allowDynamicInit);
    return { layout, agent, init };
  }

  /**
   * Runs `fn` with the build's scratch directory: one private directory
   * (short name, under os.tmpdir()) for every temporary file of the build,
   * staging copies of image outputs included, removed in the end whether the
   * build succeeded, failed or was cancelled.
   */
  private async inScratch<T>(signal: AbortSignal | undefined, fn: (scratchDir: string) => Promise<T>): Promise<T> {
    signal?.throwIfAborted();
    const scratchDir = await mkdtemp(join(tmpdir(), "a3s-"));
    try {
      await pausePoint("source", signal);
      return await fn(scratchDir);
    } finally {
      await removeTree(scratchDir);
    }
  }

  private async produce(checked: Checked, signal: AbortSignal | undefined, scratchDir: string, epoch = this.epoch ?? sourceDateEpoch()): Promise<{ tree: RootfsTree; source: SourceResult }> {
    const { layout } = checked;
    const progress = (m: string): void => this.progress(m);
    const source = await this.source.load({ epoch, warn: this.warn, progress, signal, scratchDir });
    signal?.throwIfAborted();
    // What the image says about its agent matters only when the build runs the image's agent.
    if (!this.agent) for (const w of source.agentWarnings ?? []) this.warn(w);
    const tree = source.tree;
    applyGuestLayout(tree, layout, checked.agent);
    applyGuestConfig(tree, layout, this.launch(layout.agentPath, source), checked.init);
    for (const f of this.files) tree.addFile(f.path, await fileContent(f.content), f.meta);
    return { tree, source };
  }

  /**
   * How the agent starts: an agent given to the builder runs from the
   * layout's path with the builder's settings; otherwise the source's
   * defaults (an image's Entrypoint, Cmd, Env, WorkingDir, User) apply, with
   * the builder's settings on top.
   */
  private launch(agentPath: string, source: SourceResult): AgentLaunch {
    const d = source.agentDefaults;
    if (this.agent || !d?.path) return { path: agentPath, ...this.agentSettings };
    const s = this.agentSettings;
    const user = s.user ?? d.user;
    const args = s.args ?? d.args;
    return {
      path: d.path,
      ...(args ? { args } : {}),
      env: [...(d.env ?? []), ...(s.env ?? [])],
      ...(d.cwd ? { cwd: d.cwd } : {}),
      ...(user ? { user } : {}),
    };
  }

}

/** A program the build installs in the guest (the agent, or an --init), checked: it must run there. */
async function guestProgram(path: string, role: GuestProgramRole, allowDynamic: boolean): Promise<ContentRef> {
  const real = await realpath(path).catch(() => {
    throw new A3sError(role === "agent" ? "ENOAGENT" : "EINIT", `the ${role} binary ${path} does not exist`, { subject: path });
  });
  // Checked by the name the user gave, so the error names it; installed from the resolved file.
  await checkGuestProgram(path, role, { allowDynamic });
  return { type: "hostFile", path: real, size: (await stat(real)).size };
}

async function fileContent(input: FileInput): Promise<ContentRef> {
  if (typeof input === "string" || input instanceof Uint8Array) return bytesContent(input);
  return hostFileContent(input.hostPath);
}

async function hostFileContent(path: string): Promise<ContentRef> {
  const st = await stat(path).catch(() => undefined);
  if (!st?.isFile()) throw new A3sError("EUSAGE", `${path} is not a regular file`, { subject: path });
  return { type: "hostFile", path, size: st.size };
}
