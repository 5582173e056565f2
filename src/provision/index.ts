export { PrivateApt, type AptPackage, type AptSuiteSource } from "./private-apt.js";
export { DEBIAN_13_SUITES, provisionBundle, type BundleSpec } from "./provision-bundle.js";
export {
  bundleCacheDir,
  bundleCommand,
  listBundles,
  MANIFEST,
  newestVerifiedBundle,
  readManifest,
  sha256File,
  verifyBundle,
  type BundleKind,
  type ToolBundleManifest,
} from "./tool-bundle.js";
export { cachedImageTool, IMAGE_TOOL_BUNDLES, imageToolKind, provisionImageTool, resolveImageTool, type ImageToolName } from "./image-tools.js";
