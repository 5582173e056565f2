import {
  closeSync,
  constants,
  copyFileSync,
  fchmodSync,
  fchownSync,
  fstatSync,
  futimesSync,
  lchownSync,
  lutimesSync,
  openSync,
  readSync,
  symlinkSync,
  writeSync,
} from "node:fs";
import { A3sError } from "../../errors.js";
import { checkVerifiedIdentity } from "../../tree/index.js";
import type { FileIdentity } from "../../util/file-identity.js";
import { identityOfFd } from "../../util/file-identity.js";

/**
 * One regular file or symlink of a dir output, as plain data: what the
 * writer's threads (write-worker.ts) receive, so nothing in it is a class
 * or a getter that a structured clone would lose.
 */
export interface EntryJob {
  /** Where on the host: a path under the output's temporary directory. */
  readonly host: string;
  /** The rootfs path, for messages. */
  readonly subject: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly mtime: number;
  /** Whether to set the owner (privileged, and not already ours). */
  readonly chown: boolean;
  readonly what: SymlinkJob | BytesJob | HostFileJob | BlobRangeJob;
}
interface SymlinkJob {
  readonly type: "symlink";
  readonly target: string;
}
interface BytesJob {
  readonly type: "bytes";
  readonly data: Uint8Array;
}
interface HostFileJob {
  readonly type: "hostFile";
  readonly path: string;
  readonly size: number;
}
interface BlobRangeJob {
  readonly type: "blobRange";
  readonly blobPath: string;
  readonly offset: number;
  readonly size: number;
  readonly verified?: FileIdentity | undefined;
}

/** Bytes copied per read from a cached layer into a file. */
const COPY_CHUNK = 1 << 20;

/**
 * Creates one entry with synchronous calls: the file (or link), its
 * content, then owner (first: chown clears setuid, setgid and capabilities),
 * mode and time through the same descriptor. A symlink is never followed
 * (lchown, lutimes).
 */
export function writeEntrySync(job: EntryJob, blobs: SyncBlobReaders): void {
  const w = job.what;
  if (w.type === "symlink") {
    symlinkSync(w.target, job.host);
    if (job.chown) lchownSync(job.host, job.uid, job.gid);
    lutimesSync(job.host, job.mtime, job.mtime);
    return;
  }
  if (w.type === "hostFile") {
    // A whole file: the kernel copies it (a reflink where the filesystem
    // can, else copy_file_range), and its bytes never pass through here.
    copyFileSync(w.path, job.host, constants.COPYFILE_FICLONE);
  }
  const fd = openSync(job.host, w.type === "hostFile" ? "r+" : "wx", 0o600);
  try {
    if (w.type === "hostFile") {
      if (fstatSync(fd).size !== w.size) {
        throw new A3sError("ECONTENT", `${w.path} changed size while the rootfs was being written`, { subject: job.subject });
      }
    } else if (w.type === "bytes") {
      const data = Buffer.from(w.data.buffer, w.data.byteOffset, w.data.byteLength);
      for (let done = 0; done < data.length; ) done += writeSync(fd, data, done, data.length - done, done);
    } else {
      copyRange(fd, w, job.subject, blobs);
    }
    if (job.chown) fchownSync(fd, job.uid, job.gid);
    fchmodSync(fd, job.mode);
    futimesSync(fd, job.mtime, job.mtime);
  } finally {
    closeSync(fd);
  }
}

function copyRange(fd: number, w: BlobRangeJob, subject: string, blobs: SyncBlobReaders): void {
  const source = blobs.get(w, subject);
  const buf = blobs.buffer;
  for (let done = 0; done < w.size; ) {
    const got = readSync(source, buf, 0, Math.min(buf.length, w.size - done), w.offset + done);
    if (got === 0) {
      throw new A3sError("ECONTENT", `content of ${subject} changed size: expected ${w.size} bytes, read ${done}`, { subject });
    }
    for (let written = 0; written < got; ) written += writeSync(fd, buf, written, got - written, done + written);
    done += got;
  }
}

/** One read descriptor per cached blob for a whole write, checked once against the identity its digest was verified with. */
export class SyncBlobReaders {
  private readonly fds = new Map<string, number>();
  /** The copy buffer, shared: one thread copies one file at a time. */
  readonly buffer = Buffer.allocUnsafe(COPY_CHUNK);

  get(ref: BlobRangeJob, subject: string): number {
    let fd = this.fds.get(ref.blobPath);
    if (fd === undefined) {
      fd = openSync(ref.blobPath, "r");
      this.fds.set(ref.blobPath, fd);
      if (ref.verified) checkVerifiedIdentity(identityOfFd(fd), ref.verified, ref.blobPath, subject);
    }
    return fd;
  }

  close(): void {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
  }
}
