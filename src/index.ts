// The public API of a3s-rootfs, listed by name. docs/api.md documents every
// name exported here with an example (test/api.test.ts checks that it does);
// anything not listed is internal and may change without notice.

// Errors
export { A3sError, isA3sError } from "./errors.js";

// Building a rootfs
export { RootfsBuilder, type BuildOptions, type BuildResult, type FileInput } from "./builder/rootfs-builder.js";
export { BuildCache } from "./outputs/build-cache.js";
export { findAgentBinary, type FindAgentOptions } from "./programs/find-agent-binary.js";
export { guestProgramPath, type GuestProgram } from "./programs/guest-programs.js";
export { parseSourceSpec, type SourceOptions } from "./sources/parse-source.js";
export type { RootfsSource, SourceContext, SourceResult } from "./sources/source.js";
export type { AgentDefaults } from "./layout/apply-guest-config.js";
export { DEFAULT_LAYOUT, type GuestLayout } from "./layout/guest-layout.js";

// The tree
export { RootfsTree, type MetadataInit, type TreeEntry } from "./tree/rootfs-tree.js";
export type { EntryKind, Inode } from "./tree/inode.js";
export { bytesContent, readContent, type ContentRef } from "./tree/content.js";
export { readDirectoryTree } from "./formats/dir/reader.js";

// Writing outputs
export { parseOutputSpec, writeOutputs } from "./outputs/write-outputs.js";
export {
  OUTPUT_FORMATS,
  type OutputContext,
  type OutputFormat,
  type OutputPush,
  type OutputResult,
  type OutputSpec,
  type PushReport,
} from "./outputs/output.js";
export type { ErofsCompression } from "./formats/erofs/index.js";

// Booting
export { runRootfs, type BootTimeline, type ChangeSetOutcome, type RunOptions, type RunResult, type WorkspaceMode } from "./boot/run-vm.js";
export { applyChangeSet, type AppliedChangeSet } from "./boot/change-set-apply.js";
export { makeSnapshot, type SnapshotOptions, type SnapshotResult } from "./boot/make-snapshot.js";
export type { SnapshotManifest } from "./boot/snapshot-manifest.js";
export { debianKernel } from "./boot/debian-kernel.js";
export type { KernelBundle } from "./boot/kernel-bundle.js";

// Inspecting
export { openInspectTarget, type InspectTarget } from "./audit/open-target.js";
export { auditTree, type AuditOptions } from "./audit/audit.js";
export type { AuditReport } from "./audit/audit-report.js";
export { FINDING_SEVERITY, type Finding } from "./audit/findings.js";
export { listEntries, type EntryListing } from "./audit/list-entries.js";
export { readElfFile, type ElfInfo } from "./formats/elf/elf.js";
