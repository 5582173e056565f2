export { parseGetfattr, readHostXattrs } from "./host-xattrs.js";
export { readDirectoryTree } from "./reader.js";
export {
  applySidecar,
  buildSidecar,
  directoryIdentity,
  sidecarMarks,
  sidecarPathFor,
  type DirectoryIdentity,
  type MetadataSidecar,
  type SidecarEntry,
} from "./sidecar.js";
export { materialiseTree, type MaterialiseOptions, type MaterialiseReport } from "./writer.js";
