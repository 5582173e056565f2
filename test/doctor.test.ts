import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { planFixes, runnableHere, type HostCheck, type HostSystem } from "../src/doctor/index.js";
import { parseVersion } from "../src/doctor/tool-version.js";
import { isA3sError } from "../src/errors.js";
import { requireTool } from "../src/util/host-tool.js";
import { runCli } from "./helpers/cli.js";
import { tempDir } from "./helpers/temp-dir.js";

interface DoctorJson {
  ok: boolean;
  groups: string[];
  checks: HostCheck[];
  fixes: { command: string; root: boolean }[];
}

function row(c: Partial<HostCheck> & Pick<HostCheck, "id" | "status" | "fix">): HostCheck {
  return { group: "build", need: "required", path: null, version: null, debianPackage: null, neededBy: "x", detail: null, ...c };
}

const debianRoot: HostSystem = { name: "Debian GNU/Linux 12 (bookworm)", id: "debian", codename: "bookworm", debianLike: true, root: true };

describe("a3s-rootfs doctor", () => {
  it("--json reports every check of the default groups, with a checkout's guest-build, and passes on the test host", () => {
    const r = runCli(["doctor", "--json"]);
    const report = JSON.parse(r.stdout) as DoctorJson;
    assert.equal(r.status, 0, r.stdout);
    assert.equal(report.ok, true);
    assert.deepEqual(report.groups, ["build", "sources", "run", "guest-build"]);
    const ids = report.checks.map((c) => c.id);
    for (const id of ["node", "guest-programs", "mkfs.erofs", "mke2fs", "mksquashfs", "qemu-system-x86_64", "kvm", "virtiofsd", "kernel", "cache-space", "musl-gcc"]) {
      assert.ok(ids.includes(id), `no ${id} check`);
    }
    assert.ok(!ids.includes("docker-registry"), "tests are checked only --with tests");
    const qemu = report.checks.find((c) => c.id === "qemu-system-x86_64");
    assert.equal(qemu?.debianPackage, "qemu-system-x86");
    assert.match(qemu?.version ?? "", /^\d+\.\d+/);
    assert.equal(qemu?.neededBy, "run, demo");
  });

  it("--with tests,kernel-build adds those groups; an unknown group is a usage error", () => {
    const r = runCli(["doctor", "--json", "--with", "tests", "--with", "kernel-build"]);
    const report = JSON.parse(r.stdout) as DoctorJson;
    assert.deepEqual(report.groups, ["build", "sources", "run", "tests", "kernel-build", "guest-build"]);
    assert.ok(report.checks.some((c) => c.id === "docker-registry" && c.group === "tests"));
    assert.ok(report.checks.some((c) => c.id === "microvm-kernel" && c.group === "kernel-build"));
    const bad = runCli(["doctor", "--with", "everything"]);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--with: unknown group "everything"; the groups are build, sources, run, tests, kernel-build, guest-build, all/);
  });

  it("without the tools on PATH: each missing one fails with its package, the table says so, and the fix is printed, not run", () => {
    const empty = tempDir();
    mkdirSync(join(empty, "bin"));
    const env = { PATH: join(empty, "bin") };
    const r = runCli(["doctor", "--json"], { env });
    assert.equal(r.status, 1);
    const report = JSON.parse(r.stdout) as DoctorJson;
    const qemu = report.checks.find((c) => c.id === "qemu-system-x86_64");
    assert.equal(qemu?.status, "fail");
    assert.equal(qemu?.detail, "not installed");
    assert.equal(qemu?.fix?.kind, "apt");
    const busybox = report.checks.find((c) => c.id === "busybox");
    assert.equal(busybox?.status, "warn", "an optional tool only warns");
    assert.match(busybox?.detail ?? "", /only build busybox needs it/);
    assert.ok(report.fixes.some((f) => f.root && /^apt-get install .*\berofs-utils\b/.test(f.command)), JSON.stringify(report.fixes));

    const human = runCli(["doctor", "--fix"], { env });
    assert.equal(human.status, 1);
    assert.match(human.stdout, /FAIL {2}qemu-system-x86_64 .* qemu-system-x86 +run, demo\n +not installed\n/);
    // With no apt-get to be found, nothing is installed: the packages are named instead.
    assert.match(human.stdout, /This host is not Debian or Ubuntu \(or has no apt-get\)/);
    assert.match(human.stdout, /\n {2}apt-get install -y -qq --no-install-recommends .*erofs-utils/);
  });

  it("plans one install for the release and one for bookworm-backports (adding its source), then the guest programs, virtiofsd and the kernels", () => {
    const checks = [
      row({ id: "mkfs.erofs", status: "fail", fix: { kind: "apt", debianPackage: "erofs-utils" } }),
      row({ id: "fsck.erofs", status: "fail", fix: { kind: "apt", debianPackage: "erofs-utils" } }),
      row({ id: "kernel", status: "warn", fix: { kind: "a3s", args: ["kernel", "--fetch"] } }),
      row({ id: "microvm-kernel", status: "warn", fix: { kind: "a3s", args: ["kernel", "build"] } }),
      row({ id: "virtiofsd", status: "warn", fix: { kind: "a3s", args: ["virtiofsd", "--fetch"] } }),
      row({ id: "mke2fs", status: "warn", fix: { kind: "apt", debianPackage: "e2fsprogs", suite: "bookworm-backports" } }),
      row({ id: "qemu-system-x86_64", status: "fail", fix: { kind: "apt", debianPackage: "qemu-system-x86", suite: "bookworm-backports" } }),
      row({ id: "guest-programs", status: "fail", fix: { kind: "make-guest", dir: "/src/guest" } }),
      row({ id: "zstd", status: "ok", fix: null }),
      row({ id: "kvm", status: "warn", fix: null }),
    ];
    const steps = planFixes({ checks }, { hasAptSource: () => false });
    assert.deepEqual(
      steps.map((s) => [s.command, s.root]),
      [
        ["echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/a3s-bookworm-backports.list", true],
        ["apt-get update", true],
        ["apt-get install -y -qq --no-install-recommends erofs-utils", true],
        ["apt-get install -y -qq --no-install-recommends -t bookworm-backports e2fsprogs qemu-system-x86", true],
        ["make -C /src/guest", false],
        ["a3s-rootfs virtiofsd --fetch", false],
        ["a3s-rootfs kernel --fetch", false],
        ["a3s-rootfs kernel build", false],
      ],
    );
    assert.equal(planFixes({ checks }, { hasAptSource: () => true })[0]?.command, "apt-get update", "a configured backports source is not added again");
    assert.deepEqual(planFixes({ checks: checks.filter((c) => c.status === "ok" || c.fix === null) }), []);

    const apt = steps[2] as (typeof steps)[number];
    const make = steps[4] as (typeof steps)[number];
    assert.equal(runnableHere(apt, debianRoot), true);
    assert.equal(runnableHere(apt, { ...debianRoot, root: false }), false);
    assert.equal(runnableHere(apt, { ...debianRoot, debianLike: false }), false);
    assert.equal(runnableHere(make, { ...debianRoot, root: false, debianLike: false }), true);
  });

  it("reads versions the way the tools print them", () => {
    const cases: [string, string | undefined][] = [
      ["QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)", "10.0.2"],
      ["mke2fs 1.47.2 (1-Jan-2025)\n\tUsing EXT2FS Library version 1.47.2", "1.47.2"],
      ["*** Zstandard CLI (64-bit) v1.5.4, by Yann Collet ***", "1.5.4"],
      ["x86_64-linux-gnu-gcc (Debian 12.2.0-14+deb12u1) 12.2.0", "12.2.0"],
      ["BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1) multi-call binary.", "1.35.0"],
      ["kmod version 30\n+ZSTD +XZ", "30"],
      ["Debian 'dpkg-deb' package management program version 1.21.22 (amd64).", "1.21.22"],
      [" 1:4.5.1-1", "4.5.1"],
      ["usage: [options] FILE DIRECTORY", undefined],
    ];
    for (const [text, version] of cases) assert.equal(parseVersion(text), version, text);
  });

  it("every missing-tool error points to the doctor", () => {
    assert.throws(
      () => requireTool("a3s-no-such-tool", "a3s-no-such-package", undefined, []),
      (e: unknown) => isA3sError(e, "ETOOL") && /apt-get install a3s-no-such-package/.test(e.hint ?? "") && /a3s-rootfs doctor/.test(e.hint ?? ""),
    );
  });
});
