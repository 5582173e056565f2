export {
  mkfsErofsCapabilities,
  mksquashfsCapabilities,
  toolEnv,
  versionAtLeast,
  withScratchDir,
  type ImageWriterOptions,
  type MkfsErofsCapabilities,
  type MksquashfsCapabilities,
} from "./image-tools.js";
export type { ImageTree } from "./image-tree.js";
export { imageUuid, treeDigest } from "./image-uuid.js";
export { makeScratchDir } from "./scratch-dir.js";
export { listSome, treeFacts, type TreeFacts } from "./tree-facts.js";
export { diskProblem, explainImageToolFailure, toolComplaint } from "./tool-failure.js";
