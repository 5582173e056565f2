import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bytesContent, RootfsTree } from "../../src/tree/index.js";
import { CAP_NET_RAW, patternBytes } from "./image-sample.js";

/** Paths of the sample tree that tests look at by name. */
export const SAMPLE = {
  /** A file whose last component (150 bytes) fits neither ustar field: PAX path. */
  longComponent: "/long/" + "n".repeat(150),
  /** A path of more than 255 bytes made of short components. */
  deepLongPath: "/long/" + Array.from({ length: 6 }, (_, i) => `segment-${i}-` + "s".repeat(40)).join("/") + "/leaf.txt",
  /** 171 bytes: too long for the name field, fits a ustar prefix split. */
  prefixSplit: "/long/" + "p".repeat(80) + "/" + "q".repeat(84),
  longTargetLink: "/long/link-to-long-target",
  longTarget: "../" + "t".repeat(120),
  bigFile: "/data/big.bin",
  /** Three names of one inode. */
  hardlinks: ["/usr/bin/tool", "/usr/bin/tool-alias", "/usr/sbin/tool3"],
  ping: "/usr/bin/ping",
} as const;

/** 1 MiB + 1234 bytes: more than one archive chunk, not a multiple of 512 or 4. */
export const BIG_FILE_SIZE = (1 << 20) + 1234;

export interface SampleTree {
  readonly tree: RootfsTree;
  /** Removes the host files the tree's content points at. */
  dispose(): void;
}

/**
 * A tree with every entry kind and the metadata archive formats get wrong:
 * - files from all three content sources (bytes, a host file, a blob range),
 *   empty and larger than 1 MiB;
 * - a name component over 100 bytes, a path over 255 bytes, a path that
 *   needs the ustar prefix, a symlink target over 100 bytes, UTF-8 names;
 * - absolute and relative symlinks, a file with three hardlinked names,
 *   char and block devices, a fifo;
 * - setuid 04755, setgid 02755, a sticky 01777 directory, a 0700 directory;
 * - owners 1000, 70000 and 3000000 (more than ustar's 7 octal digits);
 * - xattrs user.test, a binary user.bytes with every byte value, and a
 *   binary security.capability;
 * - mtimes 0, ~2023 and 2100 (beyond 32-bit signed).
 * It has no /dev/console or /dev/null, so a cpio writer must add them.
 */
export function sampleTree(): SampleTree {
  const host = mkdtempSync(join(tmpdir(), "a3s-sample-tree-"));
  const bigPath = join(host, "big.bin");
  writeFileSync(bigPath, patternBytes(BIG_FILE_SIZE, 42));
  const blobPath = join(host, "layer.blob");
  const blob = patternBytes(200_000, 43);
  writeFileSync(blobPath, blob);

  const tree = new RootfsTree({ epoch: 1_600_000_000 });
  const t = 1_700_000_000;
  tree.addDirectory("/", { mode: 0o755, mtime: t });
  tree.addDirectory("/etc", { mtime: t + 1 });
  tree.addFile("/etc/hostname", bytesContent("a3s\n"), { mtime: t + 2, xattrs: { "user.test": "hello" } });
  tree.addFile("/etc/ünïcode-名前.conf", bytesContent("utf-8 name\n"), { mtime: t + 3 });
  tree.addFile("/empty", bytesContent(""), { mode: 0o600, uid: 1000, gid: 1000, mtime: 0 });

  tree.addDirectory("/data", { mode: 0o750, uid: 70_000, gid: 70_000, mtime: t + 4 });
  tree.addFile(SAMPLE.bigFile, { type: "hostFile", path: bigPath, size: BIG_FILE_SIZE }, {
    mode: 0o640,
    uid: 70_000,
    gid: 70_000,
    mtime: t + 5,
  });
  tree.addFile("/data/from-blob", { type: "blobRange", blobPath, offset: 1000, size: 70_001 }, { mtime: t + 6 });
  tree.addFile("/data/huge-owner", bytesContent("owned by 3000000\n"), {
    uid: 3_000_000,
    gid: 3_000_000,
    mtime: 4_102_444_800,
  });

  tree.addDirectory("/long", { mtime: t + 7 });
  tree.addFile(SAMPLE.longComponent, bytesContent("long component\n"), { mtime: t + 8 });
  tree.addFile(SAMPLE.deepLongPath, bytesContent("deep and long\n"), { mtime: t + 9 });
  tree.addFile(SAMPLE.prefixSplit, bytesContent("prefix split\n"), { mtime: t + 10 });
  tree.addSymlink(SAMPLE.longTargetLink, SAMPLE.longTarget, { mtime: t + 11 });
  tree.addFile("/deep/a/b/c/d/e/f/g/h/i/j/k/l/file", bytesContent("deep\n"), { mtime: t + 12 });

  tree.addFile("/bin/busybox", bytesContent(patternBytes(5000, 44)), { mode: 0o755, mtime: t + 13 });
  tree.addSymlink("/bin/sh", "busybox", { mtime: t + 14 });
  tree.addSymlink("/abs-link", "/etc/hostname", { mtime: t + 15 });

  const [tool, alias, tool3] = SAMPLE.hardlinks;
  tree.addFile(tool, bytesContent(patternBytes(3000, 45)), { mode: 0o755, mtime: t + 16 });
  tree.addHardlink(alias, tool);
  tree.addHardlink(tool3, tool);
  tree.addFile("/usr/bin/su", bytesContent("setuid\n"), { mode: 0o4755, mtime: t + 17 });
  tree.addFile("/usr/bin/wall", bytesContent("setgid\n"), { mode: 0o2755, gid: 5, mtime: t + 18 });
  tree.addFile(SAMPLE.ping, bytesContent("ping\n"), {
    mode: 0o755,
    mtime: t + 19,
    xattrs: { "security.capability": CAP_NET_RAW, "user.bytes": Buffer.from(Array.from({ length: 256 }, (_, i) => i)) },
  });

  tree.addDirectory("/dev", { mtime: t + 20 });
  tree.addDevice("/dev/ttyS0", "char", 4, 64, { mode: 0o620, gid: 5, mtime: t + 21 });
  tree.addDevice("/dev/vda", "block", 254, 0, { mode: 0o660, gid: 6, mtime: t + 22 });
  tree.addFifo("/run/initctl", { mode: 0o600, mtime: t + 23 });
  tree.addDirectory("/tmp", { mode: 0o1777, mtime: t + 24 });
  tree.addDirectory("/home/user", { mode: 0o700, uid: 1000, gid: 1000, mtime: t + 25 });
  tree.addFile("/home/user/.profile", bytesContent("export A=1\n"), { uid: 1000, gid: 1000, mtime: t + 26 });

  return { tree, dispose: () => rmSync(host, { recursive: true, force: true }) };
}
