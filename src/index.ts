// The public API of a3s-rootfs.
export { A3sError, isA3sError } from "./errors.js";
export * from "./tree/index.js";
export * from "./layout/index.js";
export * from "./agent/index.js";
export { RootfsBuilder, type BuildResult, type FileInput } from "./build/rootfs-builder.js";
export { sourceDateEpoch } from "./build/epoch.js";
export type { RootfsSource, SourceContext } from "./sources/source.js";
export { parseSourceSpec } from "./sources/parse-source.js";
export { readDirectoryTree } from "./sources/dir-reader.js";
export * from "./outputs/output.js";
export { writeOutputs, parseOutputSpec } from "./outputs/write-outputs.js";
export { readElfFile, readElfContent, type ElfInfo } from "./audit/elf.js";
export { listEntries, type EntryListing } from "./audit/list-entries.js";
