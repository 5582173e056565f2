export { deriveVeritySalt, parseVeritySalt, VERITY_BLOCK, verityTable, type VerityInfo } from "./params.js";
export { verifyVerityTree } from "./reader.js";
export { readVeritySuperblock } from "./superblock.js";
export { appendVerityTree } from "./writer.js";
export { filesystemBytes, findVerityTree, type VerityImageKind } from "./locate.js";
export { readVeritySidecar, renderVeritySidecar, veritySidecarPath } from "./sidecar.js";
