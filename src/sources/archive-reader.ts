import { mkdtempSync, rmSync } from "node:fs";
import { open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { A3sError } from "../errors.js";
import { RootfsTree } from "../tree/index.js";
import { ArchiveFile, type ArchiveLimits } from "./archive-file.js";
import { compressionFromMagic, decompressToFile, type ArchiveCompression } from "./archive-decompress.js";
import { readCpioInto } from "./cpio-reader.js";
import { looksLikeTarHeader, readTarInto } from "./tar-reader.js";

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
  readonly compression: ArchiveCompression;
  /**
   * Removes the decompressed copy the tree's file contents point into (a
   * no-op for an uncompressed archive). The tree's files cannot be read after.
   */
  dispose(): Promise<void>;
}

const DEFAULT_MAX_DECOMPRESSED = 32 * 1024 ** 3;

/**
 * Reads a tar or cpio (newc) archive, plain or gzip/zstd-compressed, into a
 * tree. The format is recognised by its bytes, not its name.
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
  const head = await readHead(archivePath);
  const compression = compressionFromMagic(head, path);
  let plainPath = archivePath;
  let tempDir: string | undefined;
  if (compression !== "none") {
    tempDir = mkdtempSync(join(tmpdir(), "a3s-archive-"));
    decompressedCopies.add(tempDir);
    installExitCleanup();
    plainPath = join(tempDir, "archive");
    try {
      await decompressToFile(archivePath, plainPath, compression, opts.maxDecompressedBytes ?? DEFAULT_MAX_DECOMPRESSED);
    } catch (e) {
      await removeCopy(tempDir);
      throw e;
    }
  }
  const dispose = async (): Promise<void> => {
    if (tempDir !== undefined) await removeCopy(tempDir);
  };
  try {
    const file = await ArchiveFile.open(plainPath);
    try {
      const inner = await file.read(0, Math.min(512, file.size), "the archive's first block");
      const format = formatFromMagic(inner, path, compression);
      const tree = new RootfsTree(opts.epoch === undefined ? {} : { epoch: opts.epoch });
      if (format === "tar") await readTarInto(tree, file, opts);
      else await readCpioInto(tree, file, opts);
      return { tree, format, compression, dispose };
    } finally {
      await file.close();
    }
  } catch (e) {
    await dispose();
    throw e;
  }
}

/** Like `openArchiveTree`, for callers that keep the tree until they exit (`inspect`, the `tar:FILE` source). */
export async function readArchiveTree(path: string, opts: ArchiveReadOptions = {}): Promise<RootfsTree> {
  return (await openArchiveTree(path, opts)).tree;
}

function formatFromMagic(head: Buffer, path: string, compression: ArchiveCompression): ArchiveFormat {
  if (head.toString("latin1", 0, 4) === "0707") return "cpio";
  if (looksLikeTarHeader(head)) return "tar";
  if (compression !== "none" && compressionFromMagic(head, path) !== "none") {
    throw new A3sError("EUNSUPPORTED", `${path} is compressed twice`, { subject: path });
  }
  throw new A3sError("EFORMAT", `${path} is not a tar or cpio (newc) archive${compression === "none" ? "" : ` inside ${compression}`}`, {
    subject: path,
  });
}

async function readHead(path: string): Promise<Buffer> {
  const handle = await open(path, "r").catch((e: Error) => {
    throw new A3sError("ENOENT", `cannot open archive ${path}: ${e.message}`, { subject: path, cause: e });
  });
  try {
    const buf = Buffer.alloc(512);
    const { bytesRead } = await handle.read(buf, 0, 512, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await handle.close();
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

async function removeCopy(dir: string): Promise<void> {
  decompressedCopies.delete(dir);
  await rm(dir, { recursive: true, force: true });
}
