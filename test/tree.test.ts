import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { bytesContent, isA3sError, RootfsTree } from "../src/index.js";
import { MAX_SYMLINK_HOPS, normaliseRootfsPath } from "../src/tree/index.js";

const text = (s: string) => bytesContent(s);

describe("RootfsTree paths", () => {
  it("normalises separators, '.' and inner '..'", () => {
    assert.equal(normaliseRootfsPath("a//b/./c/"), "/a/b/c");
    assert.equal(normaliseRootfsPath("/a/b/../c"), "/a/c");
    assert.equal(normaliseRootfsPath(""), "/");
  });

  it("rejects a '..' that would climb above the root", () => {
    const tree = new RootfsTree();
    for (const bad of ["..", "../etc/passwd", "/a/../../b", "a/b/../../../c"]) {
      assert.throws(() => tree.addFile(bad, text("x")), (e) => isA3sError(e, "EPATH"), bad);
    }
    assert.equal(tree.entryCount, 1);
  });

  it("rejects NUL bytes in names and symlink targets", () => {
    const tree = new RootfsTree();
    assert.throws(() => tree.addFile("/a\0b", text("x")), (e) => isA3sError(e, "EPATH"));
    assert.throws(() => tree.addSymlink("/l", "x\0y"), (e) => isA3sError(e, "EPATH"));
  });
});

describe("RootfsTree symlink resolution stays inside the tree", () => {
  it("takes absolute targets relative to the tree's root", () => {
    const tree = new RootfsTree();
    tree.addFile("/etc/passwd", text("inside"));
    tree.addSymlink("/link", "/etc/passwd");
    assert.equal(tree.resolve("/link")?.path, "/etc/passwd");
  });

  it("clamps '..' at the root like a chroot", () => {
    const tree = new RootfsTree();
    tree.addFile("/etc/shadow", text("inside"));
    tree.addSymlink("/a/b/escape", "../../../../../../etc/shadow");
    assert.equal(tree.resolve("/a/b/escape")?.path, "/etc/shadow");
  });

  it("writes through a symlinked parent into the tree, never the host", () => {
    const tree = new RootfsTree();
    tree.addSymlink("/lib", "/usr/lib");
    tree.addFile("/lib/libc.so", text("libc"));
    assert.equal(tree.lookup("/usr/lib/libc.so")?.kind, "file");
    assert.equal(tree.lookup("/lib", false)?.kind, "symlink");
  });

  it("stops a link loop with ELOOP", () => {
    const tree = new RootfsTree();
    tree.addSymlink("/a", "/b");
    tree.addSymlink("/b", "/a");
    assert.throws(() => tree.lookup("/a/x"), (e) => isA3sError(e, "ELOOP"));
  });

  it(`follows a chain of ${MAX_SYMLINK_HOPS} links but not one more`, () => {
    const tree = new RootfsTree();
    tree.addFile("/target", text("t"));
    tree.addSymlink(`/l${MAX_SYMLINK_HOPS}`, "/target");
    for (let i = MAX_SYMLINK_HOPS - 1; i >= 0; i--) tree.addSymlink(`/l${i}`, `l${i + 1}`);
    assert.equal(tree.resolve("/l1")?.path, "/target"); // MAX_SYMLINK_HOPS hops
    assert.throws(() => tree.resolve("/l0"), (e) => isA3sError(e, "ELOOP")); // one more
  });

  it("does not follow the final link when asked not to", () => {
    const tree = new RootfsTree();
    tree.addSymlink("/l", "/nowhere");
    assert.equal(tree.lookup("/l", false)?.kind, "symlink");
    assert.equal(tree.lookup("/l"), undefined);
  });
});

describe("RootfsTree replacement rules", () => {
  it("replaces anything with a non-directory", () => {
    const tree = new RootfsTree();
    tree.addDirectory("/x");
    tree.addFile("/x/child", text("c"));
    tree.addSymlink("/x", "/elsewhere");
    assert.equal(tree.lookup("/x", false)?.kind, "symlink");
    assert.equal(tree.entryCount, 2);
  });

  it("keeps children when a directory lands on a directory, taking the new metadata", () => {
    const tree = new RootfsTree();
    tree.addDirectory("/d", { mode: 0o700, uid: 5 });
    tree.addFile("/d/f", text("f"));
    tree.addDirectory("/d", { mode: 0o751, uid: 7, gid: 8, mtime: 1234 });
    const d = tree.lookup("/d");
    assert.equal(d?.kind, "directory");
    assert.deepEqual([d?.mode, d?.uid, d?.gid, d?.mtime], [0o751, 7, 8, 1234]);
    assert.equal(tree.lookup("/d/f")?.kind, "file");
  });

  it("replaces a symlink with a directory without touching the link's target", () => {
    const tree = new RootfsTree();
    tree.addDirectory("/real", { mode: 0o700 });
    tree.addSymlink("/d", "/real");
    tree.addDirectory("/d", { mode: 0o777 });
    assert.equal(tree.lookup("/d", false)?.kind, "directory");
    assert.equal(tree.lookup("/real")?.mode, 0o700);
  });

  it("never turns the root into anything but a directory", () => {
    const tree = new RootfsTree();
    assert.throws(() => tree.addSymlink("/", "/tmp"), (e) => isA3sError(e, "EPERM"));
    tree.addDirectory("/", { mode: 0o700 });
    assert.equal(tree.root.mode, 0o700);
  });

  it("refuses to add below a regular file", () => {
    const tree = new RootfsTree();
    tree.addFile("/f", text("f"));
    assert.throws(() => tree.addFile("/f/g", text("g")), (e) => isA3sError(e, "ENOTDIR"));
  });
});

describe("RootfsTree missing parents", () => {
  it("creates them as 0755 root-owned directories stamped with the tree's epoch", () => {
    const tree = new RootfsTree({ epoch: 4242 });
    tree.addFile("/a/b/c", text("x"), { mode: 0o600, uid: 9, mtime: 1 });
    for (const p of ["/a", "/a/b"]) {
      const d = tree.lookup(p);
      assert.deepEqual([d?.kind, d?.mode, d?.uid, d?.gid, d?.mtime], ["directory", 0o755, 0, 0, 4242]);
    }
  });
});

describe("RootfsTree hardlinks", () => {
  it("shares one inode between names, reported once as the file and then as hardlinks", () => {
    const tree = new RootfsTree();
    tree.addFile("/b/file", text("data"), { mode: 0o4755 });
    tree.addHardlink("/a/link", "/b/file");
    tree.addHardlink("/c/link2", "/a/link");
    const entries = tree.entries().filter((e) => e.inode.kind === "file");
    assert.deepEqual(
      entries.map((e) => [e.path, e.kind, e.linkPath, e.nlink]),
      [
        ["/a/link", "file", undefined, 3],
        ["/b/file", "hardlink", "/a/link", 3],
        ["/c/link2", "hardlink", "/a/link", 3],
      ],
    );
    assert.equal(new Set(entries.map((e) => e.ino)).size, 1);
    assert.equal(tree.contentBytes(), 4);
  });

  it("refuses hardlinks to directories and to missing names", () => {
    const tree = new RootfsTree();
    tree.addDirectory("/d");
    assert.throws(() => tree.addHardlink("/x", "/d"), (e) => isA3sError(e, "EPERM"));
    assert.throws(() => tree.addHardlink("/x", "/missing"), (e) => isA3sError(e, "ENOENT"));
  });
});

describe("RootfsTree walk order", () => {
  it("is sorted, parents first, and the same whatever order entries were added in", () => {
    const paths = ["/z/1", "/a/2", "/a/1", "/m", "/a/b/c"];
    const build = (order: string[]) => {
      const t = new RootfsTree();
      for (const p of order) t.addFile(p, text(p));
      return t.entries().map((e) => `${e.path}:${e.kind}:${e.ino}`);
    };
    const forward = build(paths);
    assert.deepEqual(forward, build([...paths].reverse()));
    assert.deepEqual(
      forward.map((s) => s.split(":")[0]),
      ["/", "/a", "/a/1", "/a/2", "/a/b", "/a/b/c", "/m", "/z", "/z/1"],
    );
  });

  it("counts directory links as 2 + subdirectories", () => {
    const tree = new RootfsTree();
    tree.addDirectory("/d/x");
    tree.addDirectory("/d/y");
    tree.addFile("/d/f", text(""));
    assert.equal(tree.entries().find((e) => e.path === "/d")?.nlink, 4);
  });
});

describe("RootfsTree entry kinds and metadata", () => {
  it("keeps every kind with its mode bits, owners, devices and xattrs", () => {
    const tree = new RootfsTree();
    tree.addFile("/bin/su", text("x"), { mode: 0o104755, uid: 0, gid: 0 });
    tree.addDirectory("/tmp", { mode: 0o1777 });
    tree.addDevice("/dev/null", "char", 1, 3, { mode: 0o666 });
    tree.addDevice("/dev/vda", "block", 254, 0, { mode: 0o660, gid: 6 });
    tree.addFifo("/run/fifo", { mode: 0o600, uid: 1000 });
    tree.addFile("/bin/ping", text("p"), { xattrs: { "security.capability": new Uint8Array([1, 2, 3]) } });
    const kinds = Object.fromEntries(tree.entries().map((e) => [e.path, e.kind]));
    assert.deepEqual(
      [kinds["/bin/su"], kinds["/tmp"], kinds["/dev/null"], kinds["/dev/vda"], kinds["/run/fifo"]],
      ["file", "directory", "char", "block", "fifo"],
    );
    assert.equal(tree.lookup("/bin/su")?.mode, 0o4755); // file-type bits dropped, setuid kept
    assert.equal(tree.lookup("/tmp")?.mode, 0o1777);
    const vda = tree.lookup("/dev/vda");
    assert.ok(vda?.kind === "block");
    assert.deepEqual([vda.major, vda.minor, vda.gid], [254, 0, 6]);
    assert.deepEqual([...(tree.lookup("/bin/ping")?.xattrs.get("security.capability") ?? [])], [1, 2, 3]);
  });

  it("removes a name and its subtree", () => {
    const tree = new RootfsTree();
    tree.addFile("/d/e/f", text("x"));
    assert.equal(tree.remove("/d"), true);
    assert.equal(tree.remove("/d"), false);
    assert.equal(tree.entryCount, 1);
  });
});
