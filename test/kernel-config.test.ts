// The microVM kernel's pure parts: fragments, merging, the config hash and
// cache key, the check of a finished .config, the cache's view of built
// kernels, and stopping a kbuild child. No kernel is built here.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  configHash,
  kernelConfigDir,
  loadKernelConfig,
  mergeFragments,
  parseDotConfig,
  parseFragment,
  renderMergedConfig,
  requireConfig,
  verifyConfig,
} from "../src/boot/kernel-config.js";
import { runKbuild } from "../src/boot/kernel-make.js";
import { loadKernelPatches } from "../src/boot/kernel-patches.js";
import { kbuildEnv, removeAbandonedBuilds } from "../src/boot/microvm-kernel-build.js";
import {
  findMicrovmKernel,
  listMicrovmKernels,
  microvmKernelBundle,
  microvmKernelDirName,
  microvmKernelOrigin,
  type MicrovmKernelManifest,
} from "../src/boot/microvm-kernel-cache.js";
import { isA3sError } from "../src/index.js";
import { tempDir } from "./helpers/temp-dir.js";

function errorMatching(code: string, pattern: RegExp): (e: unknown) => boolean {
  return (e) => isA3sError(e, code) && pattern.test((e as Error).message);
}

describe("kernel config fragments", () => {
  it("parses settings, unsettings, strings and numbers, and skips comments", () => {
    const f = parseFragment("a.config", '# why\nCONFIG_A=y\n\n# CONFIG_B is not set\nCONFIG_C="-x"\nCONFIG_D=64\n');
    assert.deepEqual(
      f.settings.map((s) => [s.name, s.value, s.from]),
      [["CONFIG_A", "y", "a.config:2"], ["CONFIG_B", "n", "a.config:4"], ["CONFIG_C", '"-x"', "a.config:5"], ["CONFIG_D", "64", "a.config:6"]],
    );
  });

  it("refuses modules, lines that are not config, and an option set twice in one fragment, naming file and line", () => {
    assert.throws(() => parseFragment("m.config", "CONFIG_A=y\nCONFIG_EXT4_FS=m\n"), errorMatching("EKCONFIG", /m\.config:2: CONFIG_EXT4_FS=m asks for a module/));
    assert.throws(() => parseFragment("x.config", "CONFIG_A y\n"), errorMatching("EKCONFIG", /x\.config:1: not a kernel config line/));
    assert.throws(() => parseFragment("d.config", "CONFIG_A=y\n# CONFIG_A is not set\n"), errorMatching("EKCONFIG", /d\.config:2: CONFIG_A is set twice/));
    assert.throws(() => parseFragment("v.config", "CONFIG_A=yes\n"), errorMatching("EKCONFIG", /CONFIG_A has a value Kconfig does not accept/));
  });

  it("merges fragments in any order to the same result, and reports two fragments that disagree", () => {
    const a = parseFragment("a.config", "CONFIG_NET=y\nCONFIG_X=y\n");
    const b = parseFragment("b.config", "CONFIG_NET=y\n# CONFIG_Y is not set\n");
    assert.deepEqual(mergeFragments([a, b]), mergeFragments([b, a]));
    assert.deepEqual(mergeFragments([a, b]).settings.map((s) => s.name), ["CONFIG_NET", "CONFIG_X", "CONFIG_Y"]);
    const c = parseFragment("c.config", "# CONFIG_X is not set\n");
    assert.throws(() => mergeFragments([a, c]), errorMatching("EKCONFIG", /CONFIG_X is y in a\.config:2 but n in c\.config:1/));
  });

  it("renders the merged file merge_config.sh reads", () => {
    const m = mergeFragments([parseFragment("a.config", 'CONFIG_B=y\n# CONFIG_A is not set\nCONFIG_S="v"\n')]);
    assert.equal(renderMergedConfig(m), '# merged from a.config\n# CONFIG_A is not set\nCONFIG_B=y\nCONFIG_S="v"\n');
  });
});

describe("the config hash (the cache key's config part)", () => {
  const base = "# why\nCONFIG_A=y\n# CONFIG_B is not set\n";

  it("ignores comments, fragment names and order", () => {
    const h = configHash(mergeFragments([parseFragment("a.config", base)]));
    assert.match(h, /^[0-9a-f]{64}$/);
    assert.equal(configHash(mergeFragments([parseFragment("renamed.config", "# another reason\n# CONFIG_B is not set\nCONFIG_A=y\n")])), h);
    assert.equal(
      configHash(mergeFragments([parseFragment("2.config", "# CONFIG_B is not set\n"), parseFragment("1.config", "CONFIG_A=y\n")])),
      h,
    );
  });

  it("changes with any option or value", () => {
    const h = configHash(mergeFragments([parseFragment("a.config", base)]));
    assert.notEqual(configHash(mergeFragments([parseFragment("a.config", base + "CONFIG_C=y\n")])), h);
    assert.notEqual(configHash(mergeFragments([parseFragment("a.config", "CONFIG_A=y\nCONFIG_B=y\n")])), h);
  });

  it("changes with the source patches' names and bytes, and is the settings' alone without patches", async () => {
    const m = mergeFragments([parseFragment("a.config", base)]);
    const h = configHash(m);
    assert.equal(configHash(m, []), h, "no patches: the hash of a kernel built before patches existed");
    const dir = tempDir();
    writeFileSync(join(dir, "0001-a.patch"), "--- a/x\n+++ b/x\n");
    writeFileSync(join(dir, "notes.txt"), "not a patch");
    const patches = await loadKernelPatches(dir);
    assert.deepEqual(patches.map((p) => p.name), ["0001-a.patch"]);
    const withPatch = configHash(m, patches);
    assert.notEqual(withPatch, h);
    writeFileSync(join(dir, "0001-a.patch"), "--- a/x\n+++ b/x\n@@ changed @@\n");
    assert.notEqual(configHash(m, await loadKernelPatches(dir)), withPatch, "a changed patch is a different kernel");
    assert.deepEqual(await loadKernelPatches(join(dir, "absent")), []);
  });

  it("keys the cache directory by source version and hash, and names the kernel for runs", () => {
    const hash = "0123456789abcdef".repeat(4);
    assert.equal(microvmKernelDirName("6.12.117-1~deb12u1", hash), "a3s-microvm_6.12.117-1~deb12u1_0123456789abcdef");
    assert.equal(microvmKernelDirName("1:6.12-1", hash), "a3s-microvm_1%3a6.12-1_0123456789abcdef");
    assert.notEqual(microvmKernelDirName("6.12.118-1~deb12u1", hash), microvmKernelDirName("6.12.117-1~deb12u1", hash));
    assert.equal(microvmKernelOrigin({ sourceVersion: "6.12.117-1~deb12u1", configHash: hash }), "a3s-microvm:6.12.117-1~deb12u1+01234567");
  });
});

describe("checking a finished .config against the fragments", () => {
  const merged = mergeFragments([parseFragment("virtio.config", 'CONFIG_VIRTIO_MMIO=y\n# CONFIG_PCI is not set\nCONFIG_LOCALVERSION="-a3s"\n')]);

  it("passes when every option came out as asked; an absent option counts as off", () => {
    const dot = '# comment\nCONFIG_VIRTIO_MMIO=y\nCONFIG_LOCALVERSION="-a3s"\nCONFIG_OTHER=y\n';
    assert.deepEqual(verifyConfig(merged, dot), []);
    assert.equal(parseDotConfig("# CONFIG_PCI is not set\n").get("CONFIG_PCI"), "n");
  });

  it("names an option Kconfig dropped for a missing dependency, and where it was asked for", () => {
    const dot = '# CONFIG_VIRTIO_MMIO is not set\nCONFIG_PCI=y\nCONFIG_LOCALVERSION=""\n';
    assert.deepEqual(
      verifyConfig(merged, dot).map((m) => [m.name, m.wanted, m.got, m.from]),
      [["CONFIG_LOCALVERSION", '"-a3s"', '""', "virtio.config:3"], ["CONFIG_PCI", "n", "y", "virtio.config:2"], ["CONFIG_VIRTIO_MMIO", "y", "n", "virtio.config:1"]],
    );
    assert.throws(
      () => requireConfig(merged, "CONFIG_PCI=n\n", "after configuring"),
      (e) => isA3sError(e, "EKCONFIG") && /CONFIG_VIRTIO_MMIO: asked y \(virtio\.config:1\), got n/.test(e.message) && e.subject === "CONFIG_LOCALVERSION",
    );
  });
});

describe("the shipped fragments", () => {
  it("parse, agree with each other, and build in what the guest boots with, without modules", async () => {
    const merged = await loadKernelConfig();
    const value = new Map(merged.settings.map((s) => [s.name, s.value]));
    for (const on of [
      "CONFIG_PVH", "CONFIG_VIRTIO_MMIO", "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES", "CONFIG_ACPI", "CONFIG_VIRTIO_BLK", "CONFIG_VIRTIO_CONSOLE",
      "CONFIG_VIRTIO_FS", "CONFIG_9P_FS", "CONFIG_NET_9P_VIRTIO", "CONFIG_EROFS_FS", "CONFIG_EXT4_FS", "CONFIG_SQUASHFS_ZSTD", "CONFIG_SQUASHFS_XZ",
      "CONFIG_OVERLAY_FS", "CONFIG_DM_VERITY", "CONFIG_DM_INIT", "CONFIG_VIRTIO_VSOCKETS", "CONFIG_DEVTMPFS", "CONFIG_TMPFS", "CONFIG_SERIAL_8250_CONSOLE",
      "CONFIG_RD_GZIP", "CONFIG_RD_ZSTD", "CONFIG_HW_RANDOM_VIRTIO", "CONFIG_VMGENID",
    ]) {
      assert.equal(value.get(on), "y", on);
    }
    for (const off of ["CONFIG_MODULES", "CONFIG_VIRTIO_PCI", "CONFIG_USB_SUPPORT", "CONFIG_SOUND", "CONFIG_DRM"]) assert.equal(value.get(off), "n", off);
    // Every fragment explains itself: no option without a comment above its group.
    for (const name of merged.fragments) {
      const text = readFileSync(join(kernelConfigDir(), name), "utf8");
      assert.match(text, /^# /, `${name} starts with a comment`);
    }
  });
});

describe("built kernels in the cache", () => {
  function publish(cache: string, fragmentsHash: string, opts: { builtAt: string; bytes?: number; version?: string }): string {
    const version = opts.version ?? "6.12.117-1~deb12u1";
    const dir = join(cache, "kernels", microvmKernelDirName(version, fragmentsHash));
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "vmlinux"), Buffer.alloc(100));
    const manifest: MicrovmKernelManifest = {
      format: 1, release: "6.12.117-a3s-microvm", sourcePackage: "linux-source-6.12", sourceVersion: version, configHash: fragmentsHash,
      fragments: ["a.config"], bytes: opts.bytes ?? 100, sha256: "0".repeat(64), pvhEntry: "0x1000000", compiler: "gcc", buildSteps: 10,
      durationMs: 1, builtAt: opts.builtAt,
    };
    writeFileSync(join(dir, "kernel.json"), JSON.stringify(manifest));
    return dir;
  }

  it("lists complete kernels, newest first, and boots by default only one built from the current fragments", async () => {
    const cache = tempDir();
    const fragments = join(cache, "fragments");
    mkdirSync(fragments);
    writeFileSync(join(fragments, "a.config"), "# why\nCONFIG_A=y\n");
    const current = configHash(await loadKernelConfig(fragments));
    const other = "f".repeat(64);
    publish(cache, other, { builtAt: "2026-01-02T00:00:00Z", version: "6.12.118-1~deb12u1" });
    const dir = publish(cache, current, { builtAt: "2026-01-01T00:00:00Z" });
    // Damaged after publishing: its vmlinux is not the size kernel.json records.
    publish(cache, current, { builtAt: "2026-01-03T00:00:00Z", bytes: 99, version: "6.12.119-1~deb12u1" });
    // Half-written by a build that was stopped: no kernel.json.
    mkdirSync(join(cache, "kernels", ".build-x", "kernel"), { recursive: true });

    const listed = await listMicrovmKernels(cache);
    assert.deepEqual(listed.map((k) => k.sourceVersion), ["6.12.118-1~deb12u1", "6.12.117-1~deb12u1"]);
    const found = await findMicrovmKernel({ cacheDir: cache, fragmentsDir: fragments, patchesDir: join(cache, "patches") });
    assert.equal(found?.dir, dir);
    assert.equal(found?.origin, `a3s-microvm:6.12.117-1~deb12u1+${current.slice(0, 8)}`);
    assert.deepEqual(microvmKernelBundle(found!).modules, [], "a built kernel needs no modules");
    writeFileSync(join(fragments, "a.config"), "CONFIG_A=y\nCONFIG_B=y\n");
    assert.equal(await findMicrovmKernel({ cacheDir: cache, fragmentsDir: fragments, patchesDir: join(cache, "patches") }), undefined, "other fragments: not booted by default");
  });
});

describe("build directories", () => {
  it("removes one whose builder is gone, and keeps one whose builder still runs", async () => {
    const kernels = tempDir();
    // pid_max is at most 2^22: this pid cannot be running.
    const abandoned = join(kernels, ".build-4194305-abc");
    const running = join(kernels, `.build-${process.pid}-def`);
    for (const d of [abandoned, running]) mkdirSync(join(d, "obj"), { recursive: true });
    await removeAbandonedBuilds(kernels);
    assert.deepEqual([existsSync(abandoned), existsSync(running)], [false, true]);
  });
});

describe("kbuild as a child process", () => {
  it("fixes what kbuild stamps into the kernel and keeps the caller's environment out", () => {
    process.env.MAKEFLAGS = "-j99";
    try {
      const env = kbuildEnv(new Date("2026-11-14T12:56:00Z"));
      assert.equal(env.KBUILD_BUILD_TIMESTAMP, "Sat, 14 Nov 2026 12:56:00 GMT");
      assert.deepEqual([env.KBUILD_BUILD_USER, env.KBUILD_BUILD_HOST, env.KBUILD_BUILD_VERSION, env.ARCH], ["a3s", "a3s-rootfs", "1", "x86_64"]);
      assert.equal(env.MAKEFLAGS, undefined);
    } finally {
      delete process.env.MAKEFLAGS;
    }
  });

  it("counts build steps, and on failure reports the last lines with the log", async () => {
    const dir = tempDir();
    const log = join(dir, "build.log");
    const seen: string[] = [];
    const steps = await runKbuild("bash", {
      cwd: dir, env: { PATH: process.env.PATH }, logFile: log, what: "building",
      args: ["-c", "echo '  CC      kernel/fork.o'; echo 'warning: x'; echo '  LD      vmlinux'"],
      onStep: (_n, line) => seen.push(line.trim().split(/\s+/)[1] as string),
    });
    assert.equal(steps, 2);
    assert.deepEqual(seen, ["kernel/fork.o", "vmlinux"]);
    await assert.rejects(
      runKbuild("bash", { cwd: dir, env: { PATH: process.env.PATH }, logFile: log, what: "building the kernel", args: ["-c", "echo 'fs/x.c:1: error: boom' >&2; exit 2"] }),
      (e) => isA3sError(e, "EKBUILD") && /building the kernel failed: bash exited with status 2:\nfs\/x\.c:1: error: boom/.test(e.message) && e.subject === log,
    );
    assert.match(readFileSync(log, "utf8"), /error: boom/);
  });

  it("stops make and everything it started when aborted", async () => {
    const dir = tempDir();
    const pidFile = join(dir, "grandchild.pid");
    const abort = new AbortController();
    const run = runKbuild("bash", {
      cwd: dir, env: { PATH: process.env.PATH }, logFile: join(dir, "log"), what: "building", signal: abort.signal,
      // A compiler-like grandchild that would outlive a parent killed alone.
      args: ["-c", `sleep 300 & echo $! > ${pidFile}; echo '  CC      a.o'; wait`],
      onStep: () => abort.abort(),
    });
    await assert.rejects(run, (e) => isA3sError(e, "EABORTED"));
    const pid = Number(readFileSync(pidFile, "utf8"));
    // Killed by then; it may take a moment to be reaped.
    const alive = (): boolean => existsSync(`/proc/${pid}`) && !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
    for (let i = 0; i < 50 && alive(); i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(alive(), false, "the grandchild is gone");
  });
});
