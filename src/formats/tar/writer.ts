import type { Readable } from "node:stream";
import { contentSize, type RootfsTree, type TreeEntry } from "../../tree/index.js";
import { archiveReadable, pumpArchiveInto, type ArchiveProducer, type ChunkWriter } from "../archive/index.js";
import { TAR_TYPE, padding, writeTarHeader, type TarHeaderFields } from "./header.js";
import { TAR_BLOCK } from "./magic.js";

/** GNU tar's default record (20 blocks): archives are padded to a whole record, as GNU tar pads them. */
export const TAR_RECORD = 20 * TAR_BLOCK;

/**
 * The tree as a POSIX (ustar + PAX) tar stream: the API other outputs build
 * on (e.g. feeding an image tool's tar input):
 *
 *     await pipeline(tarStream(tree), child.stdin);   // a Readable, or
 *     await writeTarStream(tree, child.stdin);         // faster: reuses its buffers and
 *                                                      // keeps several chunks queued
 *
 * Nothing is read until the consumer pulls; memory stays flat whatever the
 * tree's size. The bytes depend only on the tree:
 * - members in `tree.entries()` order, the root as "./", other names
 *   relative ("etc/passwd"), directories with a trailing "/";
 * - a second name of a file is a hardlink member ('1') pointing at the first
 *   name, so extraction gives one inode;
 * - ownership numeric with empty uname/gname; PAX headers only where ustar
 *   cannot hold a value (long names or link names, uid/gid ≥ 8^7, sizes ≥
 *   8 GiB, mtimes outside 0..8^11) and for xattrs, as SCHILY.xattr.NAME with
 *   the raw value; no atime/ctime, no pid, no clock;
 * - two zero blocks at the end, then zeros to a 10240-byte record.
 *
 * A content source that changed size since it entered the tree fails the
 * stream (an A3sError with code ECONTENT).
 */
export function tarStream(tree: RootfsTree): Readable {
  return archiveReadable(tarProducer(tree));
}

/**
 * Writes the same tar bytes as `tarStream` into `out` and ends it. Resolves
 * when `out` has taken every chunk (for a child's stdin: when the pipe has).
 * `readerMayStop` is for a tool's stdin (runTool's `feed`): the tool
 * stopping before the end is then not an error here (see pumpArchiveInto).
 */
export function writeTarStream(tree: RootfsTree, out: NodeJS.WritableStream, opts: { signal?: AbortSignal; readerMayStop?: boolean } = {}): Promise<void> {
  return pumpArchiveInto(tarProducer(tree), out, opts.signal, { readerMayStop: opts.readerMayStop ?? false });
}

/**
 * The tree's tar as an image tool's stdin (runTool's `feed`), the way
 * mkfs.erofs and mksquashfs take it. writeTarStream rather than a
 * piped tarStream(): it keeps four 1 MiB chunks queued in the pipe and
 * reuses them, where a Readable hands out a new chunk each time (fresh
 * memory to fault in, and garbage) and lets the tool empty the pipe and
 * wait (bench/results/core-speed-notes.md). The tool stopping before the
 * record padding is not a failure here; its exit status tells.
 */
export function tarFeed(tree: RootfsTree, signal?: AbortSignal): (stdin: NodeJS.WritableStream) => Promise<void> {
  return (stdin) => writeTarStream(tree, stdin, { ...(signal ? { signal } : {}), readerMayStop: true });
}

/** The tar archive of `tree` as a producer (see archive/archive-stream.ts), for writeArchiveFile and the functions above. */
export function tarProducer(tree: RootfsTree): ArchiveProducer {
  // The tree is walked as the archive is written, one entry at a time, not
  // listed first: a list of every entry with its path is 15 MiB for /usr.
  return (out) => produceTar(tree.walk(), out);
}

function* produceTar(entries: Iterable<TreeEntry>, out: ChunkWriter): Generator<void, void, void> {
  for (const e of entries) {
    const inode = e.inode;
    const h: TarHeaderFields = {
      name: tarMemberName(e.path, inode.kind === "directory"),
      type: TAR_TYPE.file,
      mode: inode.mode,
      uid: inode.uid,
      gid: inode.gid,
      size: 0,
      mtime: inode.mtime,
      xattrs: inode.xattrs,
    };
    if (e.kind === "hardlink") {
      // Metadata and xattrs belong to the inode and were written with its
      // first name; a hardlink member carries only where to link to.
      h.type = TAR_TYPE.hardlink;
      h.linkName = tarMemberName(e.linkPath as string, false);
      delete h.xattrs;
      writeTarHeader(out, h);
    } else if (inode.kind === "file") {
      h.size = contentSize(inode.content);
      writeTarHeader(out, h);
      yield* out.content(inode.content, h.size, e.path);
      out.zeros(padding(h.size));
    } else {
      if (inode.kind === "directory") h.type = TAR_TYPE.directory;
      else if (inode.kind === "symlink") {
        h.type = TAR_TYPE.symlink;
        h.linkName = inode.target;
      } else if (inode.kind === "fifo") h.type = TAR_TYPE.fifo;
      else {
        h.type = inode.kind === "char" ? TAR_TYPE.char : TAR_TYPE.block;
        h.devMajor = inode.major;
        h.devMinor = inode.minor;
      }
      writeTarHeader(out, h);
    }
    if (out.ready.length > 0) yield;
  }
  out.zeros(2 * TAR_BLOCK);
  const rest = out.total % TAR_RECORD;
  if (rest !== 0) out.zeros(TAR_RECORD - rest);
}

/** "/" → "./", "/etc" → "etc/" for a directory, "/etc/passwd" → "etc/passwd". */
export function tarMemberName(path: string, isDirectory: boolean): string {
  if (path === "/") return "./";
  return path.slice(1) + (isDirectory ? "/" : "");
}
