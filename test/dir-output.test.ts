import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { bytesContent, readDirectoryTree, RootfsTree, writeOutputs } from "../src/index.js";
import { tempDir } from "./helpers/temp-dir.js";

const isRoot = process.getuid?.() === 0;

function sampleTree(): RootfsTree {
  const tree = new RootfsTree({ epoch: 1000 });
  tree.addDirectory("/ro", { mode: 0o555, mtime: 2000 });
  tree.addFile("/ro/file", bytesContent("read-only dir child"), { mode: 0o640, uid: 1000, gid: 2000, mtime: 3000 });
  tree.addFile("/bin/su", bytesContent("setuid"), { mode: 0o4755 });
  tree.addDirectory("/tmp", { mode: 0o1777 });
  tree.addSymlink("/lib", "usr/lib", { mtime: 4000 });
  tree.addFile("/usr/lib/libx.so", bytesContent("lib"));
  tree.addHardlink("/bin/su-again", "/bin/su");
  tree.addDevice("/dev/null", "char", 1, 3, { mode: 0o666 });
  tree.addDevice("/dev/vda", "block", 254, 16, { mode: 0o660, gid: 6 });
  tree.addFifo("/run/pipe", { mode: 0o620, uid: 70000 });
  tree.addFile("/bin/ping", bytesContent("ping"), { xattrs: { "user.note": "hello" } });
  // A foreign owner, setuid and a file capability on one file: its owner
  // must come first (chown clears both), then the xattr, then the mode.
  tree.addFile("/bin/cap", bytesContent("cap"), { mode: 0o4750, uid: 1000, gid: 1000, xattrs: { "security.capability": CAP_NET_RAW, "user.bytes": EVERY_BYTE } });
  // Names with the characters that would end a field or a line of setfattr's
  // dump: a directory named "odd name=\x", a newline and "# file: ", holding
  // bin/ping, so that the whole path holds a line naming the host's /bin/ping.
  tree.addFile(ODD_NAME, bytesContent("odd"), { xattrs: { [ODD_XATTR]: "odd value" } });
  // An xattr on a symlink lands on the link, never on what it points to.
  tree.addSymlink("/bin/cap-link", "cap", { xattrs: { "trusted.on-link": "link" } });
  tree.addFifo("/run/pipe-with-xattr", { xattrs: { "trusted.on-fifo": "fifo" } });
  return tree;
}

/** vfs_cap_data revision 2 with CAP_NET_RAW (bit 13) permitted and effective. */
const CAP_NET_RAW = Buffer.from("0100000200200000000000000000000000000000", "hex");
const EVERY_BYTE = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
const ODD_NAME = "/odd name=\\x\n# file: /bin/ping";
const ODD_XATTR = "user.a=b c\n# file: /bin/ping\\075";

/** One attribute's value as getfattr reads it, without following a final symlink. */
function xattrOf(path: string, name: string): Buffer {
  const hex = execFileSync("getfattr", ["-h", "--absolute-names", "-e", "hex", "-n", name, "--only-values", path]);
  return Buffer.from(hex);
}

/** What GNU find sees on disk, one line per entry: type mode uid gid size link path. */
function findListing(dir: string): Map<string, string> {
  const out = execFileSync("find", [dir, "-printf", "%y %m %U %G %l\t%P\n"], { encoding: "utf8" });
  const rows = new Map<string, string>();
  for (const line of out.trim().split("\n")) {
    const [meta, path] = line.split("\t");
    rows.set("/" + (path ?? ""), (meta ?? "").trim());
  }
  return rows;
}

describe("dir output", () => {
  it("materialises every entry with exact modes, owners, links, devices and xattrs (read back by find/stat)", { skip: !isRoot && "exact owners and device nodes on disk need root" }, async () => {
    const dir = tempDir();
    const target = join(dir, "rootfs");
    await writeOutputs(sampleTree(), [{ format: "dir", path: target }], { epoch: 0, warn: () => {} });
    const seen = findListing(target);
    assert.equal(seen.get("/ro"), "d 555 0 0");
    assert.equal(seen.get("/ro/file"), "f 640 1000 2000");
    assert.equal(seen.get("/bin/su"), "f 4755 0 0");
    assert.equal(seen.get("/tmp"), "d 1777 0 0");
    assert.equal(seen.get("/lib"), "l 777 0 0 usr/lib");
    assert.equal(seen.get("/dev/null"), "c 666 0 0");
    assert.equal(seen.get("/dev/vda"), "b 660 0 6");
    assert.equal(seen.get("/run/pipe"), "p 620 70000 0");
    const stat = (p: string, fmt: string) => execFileSync("stat", ["-c", fmt, join(target, p)], { encoding: "utf8" }).trim();
    assert.equal(stat("dev/vda", "%t:%T"), "fe:10");
    assert.equal(stat("bin/su", "%i"), stat("bin/su-again", "%i"));
    assert.equal(stat("bin/su", "%h"), "2");
    assert.equal(stat("ro", "%Y"), "2000");
    assert.equal(stat("ro/file", "%Y"), "3000");
    assert.equal(stat("lib", "%Y"), "4000");
    assert.equal(stat("usr", "%Y"), "1000");
    assert.equal(readFileSync(join(target, "ro/file"), "utf8"), "read-only dir child");
    const xattr = execFileSync("getfattr", ["--only-values", "-n", "user.note", join(target, "bin/ping")], { encoding: "utf8" });
    assert.equal(xattr, "hello");
    assert.equal(seen.get("/bin/cap"), "f 4750 1000 1000");
    assert.deepEqual(xattrOf(join(target, "bin/cap"), "security.capability"), CAP_NET_RAW);
    assert.deepEqual(xattrOf(join(target, "bin/cap"), "user.bytes"), EVERY_BYTE);
    assert.equal(xattrOf(join(target, ODD_NAME), ODD_XATTR).toString(), "odd value");
    assert.equal(xattrOf(join(target, "bin/cap-link"), "trusted.on-link").toString(), "link");
    assert.equal(xattrOf(join(target, "run/pipe-with-xattr"), "trusted.on-fifo").toString(), "fifo");
    assert.equal(seen.get("/run/pipe-with-xattr"), "p 644 0 0");
    // Only the names given got xattrs: none fell through the link, and the odd name's dump lines made no other.
    const dump = execFileSync("getfattr", ["-R", "-h", "-d", "-m", "-", "--absolute-names", target], { encoding: "latin1" });
    assert.equal(dump.match(/^# file: /gm)?.length, 5, dump);
  });

  it("writes its sidecar as root too, recording the published directory's identity (a3s-rootfs's mark)", async () => {
    const dir = tempDir();
    const target = join(dir, "rootfs");
    await writeOutputs(sampleTree(), [{ format: "dir", path: target }], { epoch: 0, warn: () => {} });
    const sidecar = JSON.parse(readFileSync(`${target}.a3s-metadata.json`, "utf8"));
    const st = statSync(target, { bigint: true });
    assert.deepEqual(sidecar.directory, { dev: String(st.dev), ino: String(st.ino), birthtimeNs: String(st.birthtimeNs) });
    assert.equal(sidecar.entries.length, sampleTree().entryCount);
    assert.deepEqual(readdirSync(dir).sort(), ["rootfs", "rootfs.a3s-metadata.json"]);
  });

  it("round-trips through readDirectoryTree", async () => {
    const dir = tempDir();
    const target = join(dir, "rootfs");
    const tree = sampleTree();
    await writeOutputs(tree, [{ format: "dir", path: target }], { epoch: 0, warn: () => {} });
    const back = await readDirectoryTree(target);
    const summary = (t: RootfsTree) =>
      t.entries().map((e) => {
        const i = e.inode;
        const extra = i.kind === "symlink" ? i.target : i.kind === "char" || i.kind === "block" ? `${i.major},${i.minor}` : "";
        return `${e.path} ${e.kind} ${i.mode.toString(8)} ${i.uid}:${i.gid} ${e.path === "/" ? "" : i.mtime} ${extra} ${e.linkPath ?? ""}`;
      });
    assert.deepEqual(summary(back), summary(tree));
  });

  it("as non-root, records exact metadata in the sidecar and warns", { skip: !isRoot && "building as another user (setpriv) needs root; the unprivileged run is that user" }, async () => {
    const dir = tempDir();
    chmodSync(dir, 0o777);
    const script = fileURLToPath(new URL("./fixtures/write-sample-dir.js", import.meta.url));
    const target = join(dir, "rootfs");
    const run = spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, script, target], {
      encoding: "utf8",
    });
    assert.equal(run.status, 0, run.stderr);
    const stderr = run.stderr;
    assert.match(stderr, /warning: not running as root: \d+ entries/);
    const sidecar = JSON.parse(readFileSync(`${target}.a3s-metadata.json`, "utf8"));
    const byPath = new Map<string, Record<string, unknown>>(sidecar.entries.map((e: { path: string }) => [e.path, e]));
    assert.deepEqual(byPath.get("/dev/vda"), { path: "/dev/vda", kind: "block", mode: 0o660, uid: 0, gid: 6, mtime: 1000, major: 254, minor: 16, approximated: true });
    assert.equal(byPath.get("/ro/file")?.uid, 1000);
    // The directory on disk is owned by the unprivileged user and has no device node…
    assert.equal(findListing(target).get("/dev/vda"), undefined);
    // A fifo needs no privilege, nor does a user.* xattr: both are on disk; the file capability is not.
    assert.equal(findListing(target).get("/run/pipe"), "p 620 65534 65534");
    assert.equal(xattrOf(join(target, "bin/ping"), "user.note").toString(), "hello");
    assert.equal(byPath.get("/bin/ping")?.approximated, true);
    // …but reading it back with its sidecar gives the tree that was built.
    const back = await readDirectoryTree(target);
    const vda = back.lookup("/dev/vda", false);
    assert.ok(vda?.kind === "block");
    assert.deepEqual([vda.major, vda.minor, vda.gid], [254, 16, 6]);
    const again = back.entries().find((e) => e.path === "/dev/vda-again");
    assert.deepEqual([again?.kind, again?.linkPath], ["hardlink", "/dev/vda"]);
    assert.equal(byPath.get("/dev/vda-again")?.approximated, true);
    assert.deepEqual([back.lookup("/ro/file")?.uid, back.lookup("/ro/file")?.gid], [1000, 2000]);
  });
});
