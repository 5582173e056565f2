import type { AgentDefaults } from "../layout/index.js";
import type { RootfsTree } from "../tree/index.js";

export interface SourceContext {
  /** SOURCE_DATE_EPOCH for entries the source creates without a time of its own. */
  readonly epoch: number;
  readonly warn: (message: string) => void;
  /** Progress for long work (downloads, unpacking); silent when not a TTY or with --json. */
  readonly progress: (message: string) => void;
}

export interface SourceResult {
  readonly tree: RootfsTree;
  readonly agentDefaults?: AgentDefaults;
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
}
