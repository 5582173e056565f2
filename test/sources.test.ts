import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { bytesContent, guestProgramPath, readElfFile, RootfsBuilder, RootfsTree } from "../src/index.js";
import { busyboxSource } from "../src/sources/busybox.js";
import { debootstrapSource } from "../src/sources/debootstrap.js";
import { TRIM_PROFILES, trimTree } from "../src/sources/trim.js";
import { boot } from "./helpers/boot.js";
import { tempDir } from "./helpers/temp-dir.js";

const quiet = { epoch: 0, warn: () => {}, progress: () => {} };

describe("busybox source", () => {
  it("adds a static BusyBox and one link per applet, as symlinks or hardlinks", async () => {
    const { tree, report } = await busyboxSource("").load(quiet);
    const bin = tree.lookup("/bin/busybox");
    assert.ok(bin?.kind === "file" && bin.content.type === "hostFile");
    assert.equal((await readElfFile(bin.content.path))?.isStatic, true);
    assert.equal(tree.lookup("/bin/sh", false)?.kind, "symlink");
    assert.equal(tree.resolve("/bin/sh")?.path, "/bin/busybox");
    // Every applet but BusyBox's own name is a link to the binary.
    const links = tree.entries().filter((e) => e.kind === "symlink" && tree.resolve(e.path)?.path === "/bin/busybox").length;
    assert.equal(links, (report?.applets as number) - 1);

    const hard = (await busyboxSource("", "hardlink").load(quiet)).tree;
    const sh = hard.entries().find((e) => e.path === "/bin/sh");
    const bb = hard.entries().find((e) => e.path === "/bin/busybox");
    assert.equal(sh?.ino, bb?.ino);
  });

  it("builds and boots: the probe finds a shell", async () => {
    const dir = tempDir();
    const image = join(dir, "busybox.cpio.gz");
    await new RootfsBuilder().withSource("busybox").withAgentBinary(guestProgramPath("probe")).withOutput("cpio", image).build();
    const r = await boot({ image });
    assert.equal(r.exitCode, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { shell_found: boolean; shells: string[] };
    assert.equal(report.shell_found, true);
    assert.ok(report.shells.includes("/bin/sh"), JSON.stringify(report.shells));
  });
});

describe("trim profiles", () => {
  it("remove exactly the entries their rules list, and nothing else", () => {
    const tree = new RootfsTree();
    const paths = [
      "/usr/share/doc/bash/README", "/usr/share/doc/bash/copyright", "/usr/share/man/man1/ls.1.gz", "/usr/share/info/dir",
      "/usr/share/locale/de/LC_MESSAGES/x.mo", "/usr/lib/locale/C.utf8/LC_CTYPE", "/usr/lib/locale/de_DE/LC_CTYPE",
      "/var/lib/apt/lists/deb.debian.org_Packages", "/var/lib/apt/lists/lock", "/var/cache/apt/pkgcache.bin",
      "/var/cache/apt/archives/lock", "/var/cache/debconf/config.dat", "/var/cache/debconf/config.dat-old",
      "/var/log/dpkg.log", "/usr/bin/ls", "/usr/share/docs-not-doc/x", "/etc/locale.gen",
    ];
    for (const p of paths) tree.addFile(p, bytesContent(p));
    tree.addDirectory("/var/lib/apt/lists/partial");
    tree.addDirectory("/var/log/apt");
    const removed = trimTree(tree, "minimal").sort();
    assert.deepEqual(removed, [
      "/usr/lib/locale/de_DE", "/usr/lib/locale/de_DE/LC_CTYPE",
      "/usr/share/doc/bash/README", "/usr/share/info/dir",
      "/usr/share/locale/de", "/usr/share/locale/de/LC_MESSAGES", "/usr/share/locale/de/LC_MESSAGES/x.mo",
      "/usr/share/man/man1", "/usr/share/man/man1/ls.1.gz",
      "/var/cache/apt/pkgcache.bin", "/var/cache/debconf/config.dat-old",
      "/var/lib/apt/lists/deb.debian.org_Packages", "/var/log/apt", "/var/log/dpkg.log",
    ]);
    for (const kept of ["/usr/share/doc/bash/copyright", "/usr/lib/locale/C.utf8/LC_CTYPE", "/var/lib/apt/lists/lock",
      "/var/lib/apt/lists/partial", "/var/cache/apt/archives/lock", "/var/cache/debconf/config.dat", "/usr/bin/ls",
      "/usr/share/docs-not-doc/x", "/etc/locale.gen", "/usr/share/man", "/var/log"]) {
      assert.ok(tree.lookup(kept, false), `${kept} is kept`);
    }
    assert.deepEqual(trimTree(tree, "none"), []);
    assert.ok(TRIM_PROFILES.docs.every((r) => TRIM_PROFILES.minimal.includes(r)));
  });
});

describe("debootstrap source", () => {
  it("bootstraps Debian minbase, trims it, lists its packages, and boots from erofs", async () => {
    const suite = (await import("node:fs")).readFileSync("/etc/os-release", "utf8").match(/^VERSION_CODENAME=(\w+)/m)?.[1] ?? "bookworm";
    const source = debootstrapSource(suite);
    const { tree, report } = await source.load(quiet);
    const packages = report?.packages as { name: string; version: string }[];
    for (const essential of ["base-files", "dpkg", "libc6", "apt"]) {
      assert.ok(packages.some((p) => p.name === essential && p.version.length > 0), essential);
    }
    assert.equal(tree.lookup("/usr/share/man/man1"), undefined, "man pages trimmed");
    assert.ok(tree.lookup("/usr/bin/dpkg"), "the system is there");
    assert.ok((report?.trimmed as number) > 0);

    const dir = tempDir();
    const image = join(dir, "debian.erofs");
    const build = await new RootfsBuilder()
      .withSource(source)
      .withAgentBinary(guestProgramPath("probe"))
      .withOutput("erofs", image)
      .build();
    assert.ok(build.entries > 1000);
    const r = await boot({ image });
    assert.equal(r.exitCode, 0, r.stderr);
    const probe = JSON.parse(r.stdout) as { root: { writable: boolean }; shell_found: boolean };
    assert.equal(probe.root.writable, false);
    assert.equal(probe.shell_found, true);
  });
});
