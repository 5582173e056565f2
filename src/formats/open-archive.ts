import { mkdtempSync, rmSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { A3sError } from "../errors.js";
import { RootfsTree } from "../tree/index.js";
import { ArchiveFile, type ArchiveLimits } from "./archive/index.js";
import { decompressToFile, isCompression, supportedCompression, type Compression } from "./compression/index.js";
import { detectFormat, readHead, unrecognisedFormat, type FileFormat } from "./detect.js";
import { readCpioInto } from "./newc/index.js";
import { readTarInto } from "./tar/index.js";

export type ArchiveFormat = "tar" | "cpio";

export interface ArchiveReadOptions extends ArchiveLimits {
  /** SOURCE_DATE_EPOCH for the tree (mtime of directories the archive implies but does not list). */
  readonly epoch?: number;
  /** Most bytes a compressed archive may expand to (default 32 GiB). */
  readonly maxDecompressedBytes?: number;
}

export interface OpenedArchive {
  readonly tree: RootfsTree;
  readonly format: ArchiveFormat;
  readonly compression: Compression | "none";
  /**
   * Removes the decompressed copy the tree's file contents point into (a
   * no-op for an uncompressed archive). The tree's files cannot be read after.
   */
  dispose(): Promise<void>;
}

const DEFAULT_MAX_DECOMPRESSED = 32 * 1024 ** 3;

/**
 * Reads a tar or cpio (newc) archive, plain or gzip/zstd-compressed, into a
 * tree. The format is recognised by its bytes (detect.ts), not its name.
 *
 * File contents are not loaded: each file is a `blobRange` into an
 * uncompressed archive. For an uncompressed archive that is the archive
 * itself. A compressed archive is first decompressed to a temporary file
 * (bounded by maxDecompressedBytes), because a compressed stream cannot be
 * read at an offset, and keeping every file's bytes in memory instead would
 * make memory grow with the archive. That temporary file lives until
 * `dispose()`, or for `readArchiveTree` until the process exits.
 */
export async function openArchiveTree(path: string, opts: ArchiveReadOptions = {}): Promise<OpenedArchive> {
  const archivePath = resolve(path);
  const compression = supportedCompression(detectFormat(await readHead(archivePath)), path);
  const plain = compression === "none" ? { path: archivePath, dispose: async () => undefined } : await decompressedCopy(archivePath, compression, opts);
  try {
    // Messages name the user's file; offsets in a compressed one are of its decompressed bytes.
    const file = await ArchiveFile.open(plain.path, compression === "none" ? archivePath : `${archivePath} (decompressed)`);
    try {
      const inner = await file.read(0, Math.min(512, file.size), "the archive's first block");
      const format = archiveFormat(detectFormat(inner), path, compression);
      const tree = new RootfsTree(opts.epoch === undefined ? {} : { epoch: opts.epoch });
      if (format === "tar") await readTarInto(tree, file, opts);
      else await readCpioInto(tree, file, opts);
      return { tree, format, compression, dispose: plain.dispose };
    } finally {
      await file.close();
    }
  } catch (e) {
    await plain.dispose();
    throw e;
  }
}

/** Like `openArchiveTree`, for callers that keep the tree until they exit (`inspect`, the `tar:FILE` source). */
export async function readArchiveTree(path: string, opts: ArchiveReadOptions = {}): Promise<RootfsTree> {
  return (await openArchiveTree(path, opts)).tree;
}

function archiveFormat(inner: FileFormat | undefined, path: string, compression: Compression | "none"): ArchiveFormat {
  // "odc" goes to the cpio reader, which refuses it by name.
  if (inner === "newc" || inner === "odc") return "cpio";
  if (inner === "tar") return "tar";
  if (compression !== "none" && isCompression(inner)) {
    throw new A3sError("EUNSUPPORTED", `${path} is compressed twice`, { subject: path });
  }
  if (compression === "none") throw unrecognisedFormat(path);
  throw new A3sError("EFORMAT", `${path} is not a tar or cpio (newc) archive inside ${compression}`, { subject: path });
}

/** The archive decompressed into a private temporary directory, removed by `dispose` (or at exit). */
async function decompressedCopy(path: string, compression: Compression, opts: ArchiveReadOptions): Promise<{ path: string; dispose: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "a3s-archive-"));
  decompressedCopies.add(dir);
  installExitCleanup();
  const dispose = async (): Promise<void> => {
    decompressedCopies.delete(dir);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const plainPath = join(dir, "archive");
    await decompressToFile(path, plainPath, compression, {
      maxBytes: opts.maxDecompressedBytes ?? DEFAULT_MAX_DECOMPRESSED,
      limitHint: "raise the limit if the archive is trusted and really that large",
    });
    return { path: plainPath, dispose };
  } catch (e) {
    await dispose();
    throw e;
  }
}

/** Decompressed copies still on disk, removed at exit if nobody disposed of them. */
const decompressedCopies = new Set<string>();
let exitCleanupInstalled = false;

function installExitCleanup(): void {
  if (exitCleanupInstalled) return;
  exitCleanupInstalled = true;
  process.once("exit", () => {
    for (const dir of decompressedCopies) rmSync(dir, { recursive: true, force: true });
  });
}
