// Shares over virtio-fs with a virtiofsd provisioned from Debian 13 into the
// cache (the host's where it has one), and over 9p: real boots, the
// provisioned files' verification, and no helper outliving a killed CLI.
import assert from "node:assert/strict";
import { execFileSync, type ChildProcess } from "node:child_process";
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, chmodSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { listBundles } from "../src/boot/virtiofsd-bundle.js";
import { cachedVirtiofsd, findHostVirtiofsd, resolveVirtiofsd, startVirtiofsds } from "../src/boot/virtiofsd.js";
import { isA3sError } from "../src/errors.js";
import { cacheRoot } from "../src/util/cache-dir.js";
import { boot, buildProbeImage, isolateRunDirectories, killCliAndWaitForVm, leftoverVmProcesses, startRunUntilAgent } from "./helpers/boot.js";
import { runCli } from "./helpers/cli.js";
import { tempDir } from "./helpers/temp-dir.js";
import { makeShares as shares } from "./helpers/shares.js";

const runDirs = isolateRunDirectories();
const imageDir = tempDir();

interface Probe {
  workspace: { write: { writable: boolean } };
  skills: { write: { writable: boolean; error?: string } };
  mounts: { target: string; type: string; options: string }[];
  virtiofs_no_flush: string | null;
}

const probeOf = (stdout: string): Probe => JSON.parse(stdout.trim().split("\n")[0] as string) as Probe;

/** A cache directory holding a copy of the real cache's newest virtiofsd bundle, and the real cache's kernels. */
function copyOfCache(): { cache: string; bundle: string } {
  const real = cacheRoot();
  const cache = tempDir("a3s-test-cache-");
  symlinkSync(join(real, "kernels"), join(cache, "kernels"));
  if (existsSync(join(real, "kvm-probe.json"))) cpSync(join(real, "kvm-probe.json"), join(cache, "kvm-probe.json"));
  return { cache, bundle: join(cache, "virtiofsd") };
}

describe("virtio-fs and 9p shares", () => {
  let image = "";
  before(async () => {
    // setup.sh provisions it; a run would too, but a test should not wait on the network unannounced.
    await resolveVirtiofsd({ cache: cacheRoot(), provision: true });
    image = await buildProbeImage(imageDir, "erofs", "probe.erofs");
  });
  after(() => {
    assert.deepEqual(leftoverVmProcesses(runDirs), [], "no QEMU or virtiofsd is left running");
    rmSync(runDirs, { recursive: true, force: true });
  });

  it("run --transport virtiofs --json: the workspace write reaches the host, /skills refuses it, the report says virtiofs", () => {
    const { workspace, skills } = shares();
    const r = runCli(["run", image, "--workspace", workspace, "--skills", skills, "--transport", "virtiofs", "--json", "--", "--write", "/workspace/from-guest.txt", "--write", "/skills/nope"]);
    assert.equal(r.status, 0, r.stderr);
    const result = JSON.parse(r.stdout) as { transport: string; stdout: string; kernel: string };
    assert.equal(result.transport, "virtiofs");
    const p = probeOf(result.stdout);
    // The package's own kernel closes share files without FUSE_FLUSH (src/boot/virtiofs-flush.ts);
    // Debian's has no such parameter. The write below is read back on the host all the same.
    assert.equal(p.virtiofs_no_flush, result.kernel.startsWith("a3s-microvm:") ? "Y" : null, `kernel ${result.kernel}`);
    assert.equal(p.workspace.write.writable, true);
    assert.deepEqual([p.skills.write.writable, p.skills.write.error], [false, "EROFS"]);
    assert.equal(readFileSync(join(workspace, "from-guest.txt"), "utf8").length > 0, true);
    assert.equal(existsSync(join(skills, "nope")), false);
    assert.deepEqual(
      p.mounts.filter((m) => m.target === "/workspace" || m.target === "/skills").map((m) => [m.target, m.type]),
      [["/workspace", "virtiofs"], ["/skills", "virtiofs"]],
    );
  });

  it("run --memory-dir: guest RAM in a file on a huge-page tmpfs, shared with virtiofsd, and the file gone after", { skip: process.getuid?.() !== 0 && "mounting a tmpfs needs root" }, () => {
    const ram = tempDir("a3s-guest-ram-");
    execFileSync("mount", ["-t", "tmpfs", "-o", "huge=always,size=1g", "a3s-test-guest-ram", ram]);
    try {
      const { workspace } = shares();
      const r = runCli(["run", image, "--workspace", workspace, "--memory-dir", ram, "--json", "--", "--write", "/workspace/ram.txt"]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal((JSON.parse(r.stdout) as { transport: string }).transport, "virtiofs");
      assert.ok(readFileSync(join(workspace, "ram.txt"), "utf8").length > 0, "virtiofsd reached the guest's buffers in that memory");
      assert.deepEqual(readdirSync(ram), [], "QEMU unlinked its RAM file");
    } finally {
      execFileSync("umount", [ram]);
    }
    const bad = runCli(["run", image, "--memory-dir", "/proc"]);
    assert.equal(bad.status, 2, bad.stderr);
    assert.match(bad.stderr, /--memory-dir \/proc: not on a tmpfs or a hugetlbfs/);
  });

  it("--transport 9p: the same shares over virtio-9p", async () => {
    const { workspace, skills } = shares();
    const r = await boot({ image, workspace, skills, transport: "9p", args: ["--write", "/workspace/over-9p.txt", "--write", "/skills/nope"] });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.transport, "9p");
    const p = probeOf(r.stdout);
    assert.equal(p.workspace.write.writable, true);
    assert.equal(p.skills.write.writable, false);
    assert.equal(existsSync(join(workspace, "over-9p.txt")), true);
    assert.equal(p.mounts.find((m) => m.target === "/workspace")?.type, "9p");
  });

  it("QEMU and virtiofsd die with a CLI killed by SIGKILL", async () => {
    const { workspace } = shares();
    // The probe prints its report once it runs: the VM and virtiofsd are up.
    const cli = await startRunUntilAgent([image, "--workspace", workspace, "--transport", "virtiofs", "-q", "--", "--wait-signal"]);
    const running = leftoverVmProcesses(runDirs);
    assert.ok(running.some((l) => l.includes("qemu-system")), running.join("\n"));
    assert.ok(running.some((l) => l.includes("virtiofsd")), running.join("\n"));
    assert.deepEqual(await killCliAndWaitForVm(cli, runDirs), []);
  });

  it("a cached virtiofsd whose binary changed by one byte is refused, naming the file", async (t) => {
    const newest = (await listBundles(cacheRoot()))[0];
    assert.ok(newest, "a provisioned virtiofsd is in the cache");
    const { cache, bundle } = copyOfCache();
    const copy = join(bundle, newest.dir.split("/").pop() as string);
    cpSync(newest.dir, copy, { recursive: true });
    assert.equal((await cachedVirtiofsd(cache))?.path, copy, "the intact copy verifies");

    const program = join(copy, "bin", "virtiofsd");
    chmodSync(program, 0o755);
    const bytes = readFileSync(program);
    bytes[bytes.length >> 1] = (bytes[bytes.length >> 1] as number) ^ 0x01;
    writeFileSync(program, bytes);
    await assert.rejects(cachedVirtiofsd(cache), (e: Error) => e.message.includes(program) && /SHA256/.test(e.message));

    if (await findHostVirtiofsd()) return t.skip("the host's own virtiofsd is used, not the cached one");
    const { workspace } = shares();
    const r = runCli(["run", image, "--workspace", workspace, "-q"], { env: { A3S_CACHE_DIR: cache } });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`the cached virtiofsd file ${program.replace(/[.+]/g, "\\$&")} does not match its recorded SHA256`));
    assert.match(r.stderr, /a3s-rootfs virtiofsd --fetch/);
  });

  it("virtiofsds started together: one that fails is the error, and every one started is handed over to be stopped", async () => {
    const v = await resolveVirtiofsd({ cache: cacheRoot(), provision: true });
    assert.ok(v);
    const { workspace, skills } = shares();
    const sockets = tempDir("a3s-test-sockets-");
    const good = join(sockets, "good.sock");
    // A socket in a directory that does not exist: virtiofsd cannot make it and exits.
    const bad = join(sockets, "missing", "bad.sock");
    const children: ChildProcess[] = [];
    try {
      await assert.rejects(
        startVirtiofsds(v, [
          { hostPath: workspace, socket: good, readOnly: false },
          { hostPath: skills, socket: bad, readOnly: true },
        ], children),
        (e: Error) => isA3sError(e, "EVIRTIOFSD") && e.message.includes(skills),
      );
      assert.equal(children.length, 2);
      assert.ok(existsSync(good), "the other one started all the same");
      assert.equal(children[0]?.exitCode, null, "and is left running for the caller to stop");
    } finally {
      for (const c of children) c.kill("SIGKILL");
    }
  });

  it("virtiofsd --json names the virtiofsd runs use and, when provisioned, its Debian packages", () => {
    const r = runCli(["virtiofsd", "--json"]);
    assert.equal(r.status, 0, r.stderr);
    const info = JSON.parse(r.stdout) as { found: boolean; origin: string; version: string; packages: { name: string }[] | null };
    assert.equal(info.found, true);
    assert.match(info.version, /^virtiofsd \d+\.\d+/);
    if (info.origin === "cache") {
      assert.deepEqual(info.packages?.map((p) => p.name).sort(), ["libc6", "libcap-ng0", "libgcc-s1", "libseccomp2", "virtiofsd"]);
    }
  });
});
