import { chmodSync, lchownSync, linkSync, mkdirSync, utimesSync } from "node:fs";
import { chmod, copyFile, lchown, lutimes, mkdir, open, stat, symlink, type FileHandle } from "node:fs/promises";
import { A3sError } from "../../errors.js";
import { checkVerifiedIdentity, type ContentRef, type FileInode, type RootfsTree, type TreeEntry } from "../../tree/index.js";
import { forEachLimit } from "../../util/concurrency.js";
import type { EntryJob } from "./write-entry.js";
import { writeEntries } from "./write-pool.js";
import { identityOf } from "../../util/file-identity.js";
import { makeSpecialNodes, setXattrs, type SpecialNode, type XattrSet } from "./batched-tools.js";

export interface MaterialiseOptions {
  /**
   * Apply ownership, device nodes and privileged xattrs exactly. Needs root
   * (CAP_CHOWN, CAP_MKNOD, CAP_SETFCAP). Without it those are skipped and
   * reported, and the caller records them some other way.
   */
  readonly privileged: boolean;
  /**
   * Stops the write between entries. The calls already started are awaited
   * before the promise rejects, so the caller can remove `target` knowing
   * nothing will create an entry in it afterwards.
   */
  readonly signal?: AbortSignal | undefined;
}

export interface MaterialiseReport {
  /** Entries whose metadata could not be applied on disk (ownership, device nodes, xattrs). */
  readonly approximated: TreeEntry[];
}

/** xattr namespaces an unprivileged process may set on its own files. */
const UNPRIVILEGED_XATTR = /^user\./;

/**
 * Entries written at once by the asynchronous path (fifos, devices and
 * entries with xattrs, which need a helper program each).
 */
const CONCURRENCY = 16;

/**
 * How long the synchronous passes run before they let the event loop turn
 * (to see a cancellation, and so a signal handler runs), in milliseconds.
 */
const SLICE_MS = 20;

/**
 * Writes the tree under `target` (which must not exist). `target` is a fresh
 * directory we own, and every path below it comes from the tree's own walk,
 * whose names are single components with no "..", so nothing here can write
 * outside `target`. Every parent of a path is a directory this call made, so
 * no call goes through a symlink; a symlink entry is created, never followed
 * (lchown, lutimes).
 *
 * Order: directories first (parents before children, so every later entry
 * has its directory), then regular files and symlinks (in parallel on a
 * bounded pool of threads for a large tree, write-pool.ts), then fifos,
 * devices and entries with xattrs, then hardlinks (their first name exists
 * by then), and directory modes and times last.
 *
 * Why synchronous calls: each entry is a few system calls of a few
 * microseconds each on a page-cache-backed filesystem (open, write, fchown,
 * fchmod, futimes, close). Through fs/promises each one is a round trip
 * through libuv's four threads and a promise, which cost more than the call
 * itself. Measured on the two-layer Debian minbase (6.1k entries, 126 MB;
 * bench/core-speed.ts): 0.7-1.0 s of user CPU with promises, 0.14 s with
 * these calls; the system time (about 2 s on this VM, as for GNU tar -x of
 * the same files) is the kernel's either way. The passes run in slices of
 * SLICE_MS and let the event loop turn in between, so a cancellation stops
 * the write between two slices.
 */
export async function materialiseTree(
  tree: RootfsTree,
  target: string,
  opts: MaterialiseOptions,
): Promise<MaterialiseReport> {
  const entries = tree.entries();
  const approximated = new Set<TreeEntry>();
  const signal = opts.signal;
  signal?.throwIfAborted();
  await mkdir(target, { mode: 0o700 });
  const host = (p: string): string => (p === "/" ? target : target + p);
  const slices = new Slices(signal);

  // Owner-writable until the final pass, so children can be created even
  // when the directory's own mode is read-only.
  for (const e of entries) {
    if (e.kind !== "directory" || e.path === "/") continue;
    mkdirSync(host(e.path), { mode: 0o700 });
    await slices.tick();
  }

  // Regular files and symlinks in parallel (write-pool.ts); what needs a
  // helper program (mkfifo, mknod, setfattr) goes through the asynchronous
  // path after.
  const later: TreeEntry[] = [];
  const jobs: EntryJob[] = [];
  const euid = process.geteuid?.();
  const egid = process.getegid?.();
  for (const e of entries) {
    if (e.kind === "hardlink") continue;
    const inode = e.inode;
    if (inode.xattrs.size > 0 || (inode.kind !== "file" && inode.kind !== "symlink")) {
      // A directory here only for its xattrs: its owner comes with them, its mode and time last.
      if (inode.kind === "directory" && inode.xattrs.size === 0) continue;
      later.push(e);
      continue;
    }
    const chown = inode.uid !== euid || inode.gid !== egid;
    if (chown && !opts.privileged) approximated.add(e);
    jobs.push({
      host: host(e.path),
      subject: e.path,
      mode: inode.mode,
      uid: inode.uid,
      gid: inode.gid,
      mtime: inode.mtime,
      chown: chown && opts.privileged,
      what: inode.kind === "symlink" ? { type: "symlink", target: inode.target } : jobContent(inode.content),
    });
  }
  await writeEntries(jobs, signal);

  if (later.length > 0) await writeLater(later, host, opts, approximated);

  // A hardlink's metadata belongs to its first name, written above.
  for (const e of entries) {
    if (e.kind !== "hardlink") continue;
    // A device not made (the sidecar has it) has no other name to link either.
    if (!canMake(e.inode, opts)) {
      approximated.add(e);
      continue;
    }
    linkSync(host(e.linkPath as string), host(e.path));
    await slices.tick();
  }

  // Directories last and deepest first: creating children changes a
  // directory's mtime, and a read-only mode would stop those creations.
  for (let i = entries.length - 1; i >= 0; i--) {
    const e = entries[i] as TreeEntry;
    if (e.kind !== "directory") continue;
    const p = host(e.path);
    // One with xattrs was given its owner with them, in the asynchronous pass.
    if (e.inode.xattrs.size === 0 && !ownedAsWanted(e.inode)) {
      if (opts.privileged) lchownSync(p, e.inode.uid, e.inode.gid);
      else approximated.add(e);
    }
    chmodSync(p, e.inode.mode);
    utimesSync(p, e.inode.mtime, e.inode.mtime);
    await slices.tick();
  }
  signal?.throwIfAborted();
  // In walk order, so the report (and the sidecar made from it) does not depend on timing.
  return { approximated: entries.filter((e) => approximated.has(e)) };
}

/** A content as plain data for a writer thread (a host file's path may be a getter, which a structured clone loses). */
function jobContent(c: ContentRef): EntryJob["what"] {
  if (c.type === "hostFile") return { type: "hostFile", path: c.path, size: c.size };
  if (c.type === "blobRange") return { type: "blobRange", blobPath: c.blobPath, offset: c.offset, size: c.size, verified: c.verified };
  return { type: "bytes", data: c.data };
}

/** Lets the event loop turn every SLICE_MS of synchronous work, and stops there once the signal has fired. */
class Slices {
  private started = performance.now();
  constructor(private readonly signal: AbortSignal | undefined) {}

  async tick(): Promise<void> {
    if (performance.now() - this.started < SLICE_MS) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.signal?.throwIfAborted();
    this.started = performance.now();
  }
}

/**
 * The entries that need a helper program (fifos, devices, entries with
 * xattrs), in steps that each run one program for all of them
 * (batched-tools.ts): the nodes are made; then each entry gets its content
 * and owner; then every xattr is set; then modes and times. The owner comes
 * before the rest because chown(2) clears setuid and setgid bits and file
 * capabilities. What cannot be made exactly without root (a
 * device, a foreign owner, an xattr outside user.*) is added to
 * `approximated`.
 */
async function writeLater(later: readonly TreeEntry[], host: (p: string) => string, opts: MaterialiseOptions, approximated: Set<TreeEntry>): Promise<void> {
  const signal = opts.signal;
  const nodes: SpecialNode[] = [];
  const made: TreeEntry[] = [];
  for (const e of later) {
    const inode = e.inode;
    if (!canMake(inode, opts)) {
      approximated.add(e);
      continue;
    }
    if (inode.kind === "fifo") nodes.push({ path: host(e.path), kind: "fifo" });
    else if (inode.kind === "char" || inode.kind === "block") {
      nodes.push({ path: host(e.path), kind: inode.kind, major: inode.major, minor: inode.minor });
    }
    made.push(e);
  }
  await makeSpecialNodes(nodes, signal);

  const readers = new BlobReaders();
  try {
    await forEachLimit(made, CONCURRENCY, async (e) => {
      signal?.throwIfAborted();
      const p = host(e.path);
      const inode = e.inode;
      if (inode.kind === "file" && inode.content.type !== "hostFile") await writeRegularFile(e, inode, p, readers);
      else await createByPath(e, p);
      if (!ownedAsWanted(inode)) {
        if (opts.privileged) await lchown(p, inode.uid, inode.gid);
        else approximated.add(e);
      }
    });
  } finally {
    await readers.close();
  }

  const sets: XattrSet[] = [];
  for (const e of made) {
    const allowed = new Map<string, Uint8Array>();
    for (const [name, value] of e.inode.xattrs) {
      if (opts.privileged || UNPRIVILEGED_XATTR.test(name)) allowed.set(name, value);
      else approximated.add(e);
    }
    if (allowed.size > 0) sets.push({ path: host(e.path), xattrs: allowed });
  }
  await setXattrs(sets, signal);

  // A directory's mode and time come last, with the other directories'; a
  // symlink has no mode of its own.
  await forEachLimit(made, CONCURRENCY, async (e) => {
    signal?.throwIfAborted();
    if (e.kind === "directory") return;
    const p = host(e.path);
    if (e.kind !== "symlink") await chmod(p, e.inode.mode);
    await lutimes(p, e.inode.mtime, e.inode.mtime);
  });
}

/** Whether the entry can be made on disk at all: a device needs root (CAP_MKNOD); without it, it is left out and reported. */
function canMake(inode: TreeEntry["inode"], opts: MaterialiseOptions): boolean {
  return opts.privileged || (inode.kind !== "char" && inode.kind !== "block");
}

/** Creates a regular file from a host file, or a symlink (fifos and devices are made before, directories already exist). */
async function createByPath(e: TreeEntry, p: string): Promise<void> {
  const inode = e.inode;
  if (inode.kind === "file" && inode.content.type === "hostFile") {
    await copyFile(inode.content.path, p);
    const size = (await stat(p)).size;
    if (size !== inode.content.size) {
      throw new A3sError("ECONTENT", `${inode.content.path} changed size while the rootfs was being written`, { subject: e.path });
    }
  } else if (inode.kind === "symlink") await symlink(inode.target, p);
}

/** A file whose bytes are in memory or in a cached layer: its content (its metadata comes after, by path). */
async function writeRegularFile(e: TreeEntry, inode: FileInode, p: string, readers: BlobReaders): Promise<void> {
  const out = await open(p, "wx", 0o600);
  try {
    const c = inode.content;
    if (c.type === "bytes") {
      await writeAll(out, Buffer.from(c.data.buffer, c.data.byteOffset, c.data.byteLength), 0);
    } else if (c.type === "blobRange") {
      const source = await readers.get(c, e.path);
      const buf = Buffer.allocUnsafe(Math.min(c.size, COPY_CHUNK));
      for (let done = 0; done < c.size; ) {
        const want = Math.min(buf.length, c.size - done);
        const { bytesRead } = await source.read(buf, 0, want, c.offset + done);
        if (bytesRead === 0) {
          throw new A3sError("ECONTENT", `content of ${e.path} changed size: expected ${c.size} bytes, read ${done}`, { subject: e.path });
        }
        await writeAll(out, buf.subarray(0, bytesRead), done);
        done += bytesRead;
      }
    }
  } finally {
    await out.close();
  }
}

/** Writes all of `data` at `position`, however the kernel splits it. */
async function writeAll(out: FileHandle, data: Buffer, position: number): Promise<void> {
  for (let written = 0; written < data.length; ) {
    const { bytesWritten } = await out.write(data, written, data.length - written, position + written);
    written += bytesWritten;
  }
}

/** Bytes copied per read from a cached layer into a file. */
const COPY_CHUNK = 1 << 20;

async function openVerified(ref: Extract<ContentRef, { type: "blobRange" }>, subject: string): Promise<FileHandle> {
  const handle = await open(ref.blobPath, "r");
  if (!ref.verified) return handle;
  try {
    checkVerifiedIdentity(identityOf(await handle.stat({ bigint: true })), ref.verified, ref.blobPath, subject);
    return handle;
  } catch (e) {
    await handle.close();
    throw e;
  }
}

/** One read handle per cached blob for the whole write, instead of an open and a close per file. */
class BlobReaders {
  private readonly handles = new Map<string, Promise<FileHandle>>();

  /** The open blob; checked once, when it is opened, against the identity its digest was verified with. */
  get(ref: Extract<ContentRef, { type: "blobRange" }>, subject: string): Promise<FileHandle> {
    let h = this.handles.get(ref.blobPath);
    if (!h) {
      h = openVerified(ref, subject);
      this.handles.set(ref.blobPath, h);
    }
    return h;
  }

  async close(): Promise<void> {
    for (const h of this.handles.values()) await (await h.catch(() => undefined))?.close();
  }
}

/**
 * Whether a name this process just created already has the inode's owner:
 * everything here is created by us, in directories without the setgid bit
 * (their modes come last), so it is ours. Most of a rootfs is root's, and
 * skipping a chown that changes nothing saves a call per entry when root.
 */
function ownedAsWanted(inode: TreeEntry["inode"]): boolean {
  return inode.uid === process.geteuid?.() && inode.gid === process.getegid?.();
}
