// Which Debian kernel package a run uses: asked of apt, remembered with a
// fingerprint of apt's state, and asked again when that state changes.
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { aptStateFingerprint, debianKernelPackage, debianKernelPackageMemo } from "../src/boot/debian-kernel-package.js";
import { tempDir } from "./helpers/temp-dir.js";

/** A stand-in for apt's state directories: a lists folder and a status file. */
function aptState(): { lists: string; status: string; paths: string[] } {
  const dir = tempDir("a3s-apt-state-");
  const lists = join(dir, "lists");
  mkdirSync(lists);
  writeFileSync(join(lists, "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4"), "packages");
  const status = join(dir, "status");
  writeFileSync(status, "Package: dpkg\n");
  return { lists, status, paths: [lists, status] };
}

describe("the Debian kernel package", () => {
  it("fingerprints apt's state: the same files give the same digest, a changed, new or removed one another", async () => {
    const s = aptState();
    const first = await aptStateFingerprint("amd64", s.paths);
    assert.equal(await aptStateFingerprint("amd64", s.paths), first);
    assert.notEqual(await aptStateFingerprint("arm64", s.paths), first);

    const list = join(s.lists, "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4");
    utimesSync(list, new Date(2030, 0, 1), new Date(2030, 0, 1));
    const touched = await aptStateFingerprint("amd64", s.paths);
    assert.notEqual(touched, first, "apt-get update rewrote a list");

    writeFileSync(join(s.lists, "deb.debian.org_debian_dists_trixie_main_binary-amd64_Packages.lz4"), "more");
    const added = await aptStateFingerprint("amd64", s.paths);
    assert.notEqual(added, touched, "a new source");

    rmSync(s.status);
    assert.notEqual(await aptStateFingerprint("amd64", s.paths), added, "dpkg's status is gone");
  });

  it("answers from the memo while apt's state is the one it was made with, and asks apt again once it changed", async (t) => {
    if (process.env.APT_CONFIG) return t.skip("APT_CONFIG is set: nothing is remembered");
    const cacheDir = tempDir("a3s-cache-");
    const s = aptState();
    const asked = await debianKernelPackage({ cacheDir, aptState: s.paths });
    assert.match(asked.name, /^linux-image-/);
    const memoPath = debianKernelPackageMemo(cacheDir);
    const memo = JSON.parse(readFileSync(memoPath, "utf8")) as { fingerprint: string; name: string; version: string };
    assert.deepEqual({ name: memo.name, version: memo.version }, asked);

    // A memo naming another version under the current fingerprint is believed:
    // apt was not asked.
    writeFileSync(memoPath, JSON.stringify({ ...memo, version: "0.0.1-test" }));
    assert.deepEqual(await debianKernelPackage({ cacheDir, aptState: s.paths }), { name: asked.name, version: "0.0.1-test" });

    // apt's state changes: apt is asked, and the memo replaced.
    writeFileSync(join(s.lists, "deb.debian.org_debian_dists_bookworm-updates_main_binary-amd64_Packages.lz4"), "new");
    assert.deepEqual(await debianKernelPackage({ cacheDir, aptState: s.paths }), asked);
    assert.equal((JSON.parse(readFileSync(memoPath, "utf8")) as { version: string }).version, asked.version);
  });

  it("does not believe a memo whose name or version could climb out of the kernel cache", async (t) => {
    if (process.env.APT_CONFIG) return t.skip("APT_CONFIG is set: nothing is remembered");
    const cacheDir = tempDir("a3s-cache-");
    const s = aptState();
    const asked = await debianKernelPackage({ cacheDir, aptState: s.paths });
    const memoPath = debianKernelPackageMemo(cacheDir);
    const memo = JSON.parse(readFileSync(memoPath, "utf8")) as { fingerprint: string };
    for (const bad of [{ name: "linux-image-../../../etc" }, { version: "../../x" }, { version: "1.0/../../x" }]) {
      writeFileSync(memoPath, JSON.stringify({ ...memo, ...asked, ...bad }));
      assert.deepEqual(await debianKernelPackage({ cacheDir, aptState: s.paths }), asked, JSON.stringify(bad));
    }
  });
});
