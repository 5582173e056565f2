import type { AgentDefaults } from "../layout/index.js";
import type { RootfsTree } from "../tree/index.js";

export interface SourceContext {
  /** SOURCE_DATE_EPOCH for entries the source creates without a time of its own. */
  readonly epoch: number;
  readonly warn: (message: string) => void;
  /** Progress for long work (downloads, unpacking); silent when not a TTY or with --json. */
  readonly progress: (message: string) => void;
  /** Cancels the load: downloads and host tools stop, temporaries are removed, and load() rejects. */
  readonly signal?: AbortSignal | undefined;
  /** The build's scratch directory, for temporary files that must not outlive the build (default: os.tmpdir()). */
  readonly scratchDir?: string | undefined;
}

export interface SourceResult {
  readonly tree: RootfsTree;
  readonly agentDefaults?: AgentDefaults;
  /**
   * What could not be taken from the image's config for `agentDefaults` (a
   * program not in the image, an unknown user). The builder shows them only
   * when it runs the image's own agent; given an agent of its own they are
   * beside the point.
   */
  readonly agentWarnings?: readonly string[];
  /** Facts the build report carries for this source (e.g. a package manifest, an image digest). */
  readonly report?: Readonly<Record<string, unknown>>;
}

/** A source only produces a tree; it knows nothing of outputs. */
export interface RootfsSource {
  /** The spec as the user would write it, e.g. "scratch". */
  readonly spec: string;
  /** True when the source can name the agent itself (container images), so none has to be searched for. */
  readonly providesAgent?: boolean;
  load(ctx: SourceContext): Promise<SourceResult>;
  /**
   * A string naming exactly what `load` would produce (an image's manifest
   * digest and platform; "scratch"), found without loading it, for the
   * build cache's key. Undefined, or absent, when the source cannot say
   * that cheaply (a directory, a tarball, a package mirror): such builds are
   * not cached.
   */
  identify?(ctx: Pick<SourceContext, "signal">): Promise<string | undefined>;
}
