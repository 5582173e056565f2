import type { RootfsTree } from "../../tree/index.js";

/** A tree read from a filesystem image, whose file contents may live in scratch files until `dispose()`. */
export interface ImageTree {
  readonly tree: RootfsTree;
  /** False when the reader could not see xattrs (so file capabilities may be missing). */
  readonly xattrsRead: boolean;
  /** What the reader could not read exactly, for the report. */
  readonly notes: readonly string[];
  /** Removes the scratch files; the tree's file contents cannot be read after. */
  dispose(): Promise<void>;
}
