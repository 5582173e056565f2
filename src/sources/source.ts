import type { RootfsTree } from "../tree/index.js";

export interface SourceContext {
  /** SOURCE_DATE_EPOCH for entries the source creates without a time of its own. */
  readonly epoch: number;
  readonly warn: (message: string) => void;
}

/** A source only produces a tree; it knows nothing of outputs. */
export interface RootfsSource {
  /** The spec as the user would write it, e.g. "scratch". */
  readonly spec: string;
  load(ctx: SourceContext): Promise<RootfsTree>;
}
