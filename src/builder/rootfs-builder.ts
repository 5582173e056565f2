import { realpath, stat } from "node:fs/promises";
import { A3sError } from "../errors.js";
import { applyGuestLayout, resolveLayout, type GuestLayout } from "../layout/index.js";
import { applyGuestConfig, type AgentLaunch, type AgentSettings } from "../layout/apply-guest-config.js";
import type { OutputFormat, OutputResult, OutputSpec } from "../outputs/output.js";
import { writeOutputs } from "../outputs/write-outputs.js";
import { checkAgentBinary, guestProgramPath } from "../programs/index.js";
import { parseSourceSpec } from "../sources/parse-source.js";
import type { RootfsSource, SourceResult } from "../sources/source.js";
import { bytesContent, sourceDateEpoch, type ContentRef, type MetadataInit, type RootfsTree } from "../tree/index.js";

export interface BuildResult {
  readonly source: string;
  /** Names in the tree, the root included. */
  readonly entries: number;
  readonly outputs: OutputResult[];
  readonly durationMs: number;
  /** What the source reported (e.g. an image digest, a package manifest), if anything. */
  readonly sourceReport?: Readonly<Record<string, unknown>>;
  readonly tree: RootfsTree;
}

/** File content for `withFile`: text, bytes, or a file on the host read when an output is written. */
export type FileInput = string | Uint8Array | { readonly hostPath: string };

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
  private agentSettings: AgentSettings = {};
  private readonly files: { path: string; content: FileInput; meta: MetadataInit }[] = [];
  private readonly outputs: OutputSpec[] = [];
  private epoch: number | undefined;
  private warn: (message: string) => void = (m) => process.stderr.write(`a3s-rootfs: warning: ${m}\n`);
  private progress: (message: string) => void = () => {};

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

  /** The PID 1 put at /sbin/init (default: the built-in A3S init); false leaves it out. */
  withInit(path: string | false): this {
    this.init = path;
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
  async buildTree(): Promise<RootfsTree> {
    return (await this.produce()).tree;
  }

  /** Builds the tree and writes every output. */
  async build(): Promise<BuildResult> {
    const started = performance.now();
    if (this.outputs.length === 0) {
      throw new A3sError("EUSAGE", "nothing to write: give the builder a directory path or call withOutput()");
    }
    const { tree, source } = await this.produce();
    if (!this.agent && !source.agentDefaults?.path) {
      throw new A3sError("ENOAGENT", `no agent: the source ${this.source.spec} names none; call withAgentBinary(await findAgentBinary())`);
    }
    const outputs = await writeOutputs(tree, this.outputs, { epoch: tree.epoch, warn: this.warn });
    return {
      source: this.source.spec,
      entries: tree.entryCount,
      outputs,
      durationMs: Math.round(performance.now() - started),
      ...(source.report ? { sourceReport: source.report } : {}),
      tree,
    };
  }

  private async produce(): Promise<{ tree: RootfsTree; source: SourceResult }> {
    const epoch = this.epoch ?? sourceDateEpoch();
    const layout = resolveLayout(this.layout);
    const agent = this.agent ? await this.agentContent(this.agent.path, this.agent.allowDynamic) : undefined;
    const init = this.init === false ? undefined : await hostFileContent(this.init ?? guestProgramPath("init"));
    const progress = (m: string): void => this.progress(m);
    const source = await this.source.load({ epoch, warn: this.warn, progress });
    const tree = source.tree;
    applyGuestLayout(tree, layout, agent);
    applyGuestConfig(tree, layout, this.launch(layout.agentPath, source), init);
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

  private async agentContent(path: string, allowDynamic: boolean): Promise<ContentRef> {
    const real = await realpath(path).catch(() => {
      throw new A3sError("ENOAGENT", `the agent binary ${path} does not exist`, { subject: path });
    });
    await checkAgentBinary(real, { allowDynamic });
    return { type: "hostFile", path: real, size: (await stat(real)).size };
  }
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
