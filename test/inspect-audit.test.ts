import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { existsSync, readdirSync, readFileSync, realpathSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { passwordProblems } from "../src/audit/accounts.js";
import { auditTree, type AuditOptions } from "../src/audit/audit.js";
import type { AuditReport } from "../src/audit/audit-report.js";
import { decodeFileCapabilities } from "../src/audit/capabilities.js";
import { readElfFile } from "../src/formats/elf/index.js";
import { FINDING_SEVERITY } from "../src/audit/findings.js";
import { openInspectTarget } from "../src/audit/open-target.js";
import { findPrivateKey } from "../src/audit/private-keys.js";
import { busyboxShellApplets } from "../src/audit/shells.js";
import { RootfsBuilder } from "../src/builder/rootfs-builder.js";
import { createErofsWriter, dirOutput, ext4Output, squashfsOutput, tarOutput } from "../src/outputs/registry.js";
import { bytesContent, type RootfsTree } from "../src/tree/index.js";
import { findExecutable } from "../src/util/host-tool.js";
import { runCli } from "./helpers/cli.js";
import { imageDifferences } from "./helpers/image-compare.js";
import { CAP_NET_RAW, expectedView, imageSampleTree } from "./helpers/image-sample.js";
import { buildImage, isRoot } from "./helpers/image-test-kit.js";
import { compileTestBinary } from "./helpers/static-binary.js";
import { tempDir } from "./helpers/temp-dir.js";
import { umociImage } from "./helpers/umoci-image.js";

const AGENT = "/a3s/agent/a3s-box-code";
const HOST_BUSYBOX = findExecutable("busybox");

/** The A3S scratch rootfs, as the builder makes it. */
function scratchTree(agent = compileTestBinary(), opts: { allowDynamic?: boolean } = {}): Promise<RootfsTree> {
  return new RootfsBuilder().withAgentBinary(agent, opts).withEpoch(1_700_000_000).buildTree();
}

const RSA_KEY = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey.export({ type: "pkcs1", format: "pem" }) as string;
const SHADOW = [
  "root:$6$rounds=5000$salt$Cv0m4Ljq5cQdQ3oq7aZQ3yQ0u0bX7b2pQ4a1:19000:0:99999:7:::",
  "daemon:*:19000:0:99999:7:::",
  "bin:!:19000:0:99999:7:::",
  "sys:!!:19000::::::",
  "sync:!*:19000::::::",
  "locked:!$y$j9T$abc$def:19000::::::",
  "open::19000::::::",
  "",
].join("\n");

/**
 * The scratch rootfs with one of each thing the audit must find: a setuid
 * and a setgid file, a world-writable directory and file, a file with
 * capabilities (and a hardlink to it), a block device, a private key, a
 * BusyBox shell and a link named sh, a package manager, a shadow file with
 * hashes, and a decoy that only mentions a key marker.
 */
async function plantedTree(): Promise<RootfsTree> {
  const tree = await scratchTree();
  const program = { type: "hostFile" as const, path: compileTestBinary(), size: statSync(compileTestBinary()).size };
  tree.addFile("/usr/bin/su", program, { mode: 0o4755 });
  tree.addFile("/usr/bin/wall", bytesContent("#!/bin/sh\nexit 0\n"), { mode: 0o2755, gid: 5 });
  tree.addDirectory("/data", { mode: 0o777 });
  tree.addFile("/data/open", bytesContent("anyone may write here\n"), { mode: 0o666 });
  tree.addFile("/usr/bin/ping", program, { mode: 0o755, xattrs: { "security.capability": CAP_NET_RAW } });
  tree.addHardlink("/usr/bin/ping6", "/usr/bin/ping");
  tree.addDevice("/dev/sda", "block", 8, 0, { mode: 0o660, gid: 6 });
  tree.addFile("/root/.ssh/id_rsa", bytesContent(RSA_KEY), { mode: 0o600 });
  tree.addFile("/usr/share/doc/pem.c", bytesContent('const char *m = "-----BEGIN RSA PRIVATE KEY-----";\n'.repeat(3)));
  tree.addFile("/usr/bin/apt-get", bytesContent("#!/bin/sh\necho no\n"), { mode: 0o755 });
  tree.addFile("/etc/cron.daily/dpkg", bytesContent("#!/bin/sh\n"), { mode: 0o755 });
  tree.addFile("/etc/shadow", bytesContent(SHADOW), { mode: 0o640, gid: 42 });
  if (HOST_BUSYBOX) {
    tree.addFile("/bin/busybox", { type: "hostFile", path: HOST_BUSYBOX, size: statSync(HOST_BUSYBOX).size }, { mode: 0o755 });
    tree.addSymlink("/bin/sh", "busybox");
  }
  return tree;
}

/** The parts of a report that describe the rootfs (not how it was read). */
function rootfsFacts(r: AuditReport): Omit<AuditReport, "target" | "format" | "notes"> {
  const { target: _t, format: _f, notes: _n, ...rest } = r;
  return rest;
}

const codes = (r: AuditReport): string[] => [...new Set(r.findings.map((f) => f.code))].sort();

describe("inspect audit: the scratch rootfs", () => {
  it("has exactly 2 executables (init and agent), no setuid, no shell, no package manager, and a clean verdict", async () => {
    const r = await auditTree(await scratchTree());
    assert.deepEqual(r.executables, [AGENT, "/sbin/init"]);
    assert.equal(r.executableCount, 2);
    assert.deepEqual([r.setuid, r.setgid, r.worldWritable, r.shells, r.packageManagers], [[], [], [], [], []]);
    assert.deepEqual(r.findings, []);
    assert.equal(r.grade, "clean");
    assert.equal(r.verdict, "clean: 2 executables, no setuid or setgid file, no shell, no package manager");
    assert.deepEqual(r.init && [r.init.path, r.init.static, r.init.interpreter, r.init.missingLibraries], ["/sbin/init", true, null, []]);
    assert.deepEqual(r.agent && [r.agent.path, r.agent.static, r.agent.interpreter, r.agent.missingLibraries], [AGENT, true, null, []]);
    assert.equal(r.a3sGuest, true);
    assert.deepEqual([r.layout.guestDirectories.missing, r.layout.etcFiles.missing], [[], []]);
    assert.equal(r.entries, 27);
    assert.deepEqual(r.byKind, { file: 9, directory: 17, symlink: 1, char: 0, block: 0, fifo: 0, hardlink: 0 });
    assert.equal(r.largest[0]?.path, AGENT);
  });

  it("reads the agent path from guest.conf and its drop-ins, and reports a missing init", async () => {
    const tree = await new RootfsBuilder().withAgentBinary(compileTestBinary()).withInit(false).withLayout({ agentPath: "/opt/agent" }).buildTree();
    tree.addFile("/etc/a3s/guest.conf.d/50-other.conf", bytesContent("a3s-guest-config 1\nagent=/opt/other\\x2dagent\n"));
    tree.addFile("/opt/other-agent", bytesContent("#!/usr/bin/python3\n"), { mode: 0o755 });
    const r = await auditTree(tree);
    assert.equal(r.agentPath, "/opt/other-agent");
    assert.equal(r.init, null);
    assert.deepEqual(r.agent && [r.agent.kind, r.agent.static, r.agent.interpreter, r.agent.interpreterPresent], ["script", false, "/usr/bin/python3", false]);
    assert.deepEqual(codes(r), ["agent-dynamic", "init-missing", "interpreter-missing"]);
    assert.equal(r.grade, "fail");
  });

  it("reports a tree without a guest config as context, not as a broken guest", async () => {
    const tree = await scratchTree();
    tree.remove("/etc/a3s");
    tree.remove("/workspace");
    const r = await auditTree(tree);
    assert.equal(r.a3sGuest, false);
    assert.deepEqual(r.findings.map((f) => [f.severity, f.code]), [["info", "not-an-a3s-guest"]]);
    assert.equal(r.grade, "clean");
  });
});

describe("inspect audit: findings planted in a crafted tree", () => {
  it("finds each planted risk, with its documented severity", async () => {
    const r = await auditTree(await plantedTree());
    assert.deepEqual(r.setuid, ["/usr/bin/su"]);
    assert.deepEqual(r.setgid, ["/usr/bin/wall"]);
    assert.deepEqual(r.worldWritable, ["/data", "/data/open"]);
    assert.deepEqual(r.capabilities, [{ path: "/usr/bin/ping", capabilities: "cap_net_raw=ep" }]);
    assert.deepEqual(r.devices, [{ path: "/dev/sda", kind: "block", major: 8, minor: 0 }]);
    assert.deepEqual(r.privateKeys, [{ path: "/root/.ssh/id_rsa", label: "RSA PRIVATE KEY" }]);
    assert.deepEqual(r.packageManagers, ["apt"]);
    assert.deepEqual(
      r.passwordFields.map((p) => [p.account, p.problem]),
      [["root", "hash"], ["locked", "hash"], ["open", "empty"]],
    );
    const expectedExecutables = [AGENT, "/sbin/init", "/usr/bin/apt-get", "/usr/bin/ping", "/usr/bin/su", "/usr/bin/wall", "/etc/cron.daily/dpkg"];
    if (HOST_BUSYBOX) {
      expectedExecutables.push("/bin/busybox");
      assert.deepEqual(r.shells, ["/bin/busybox", "/bin/sh"]);
    }
    assert.deepEqual([...r.executables].sort(), expectedExecutables.sort());
    assert.deepEqual(
      codes(r),
      [
        "device-node", "empty-password", "file-capability", "package-manager-present", "password-hash", "private-key",
        "setgid-file", "setuid-file", ...(HOST_BUSYBOX ? ["shell-present"] : []), "world-writable-directory", "world-writable-file",
      ].sort(),
    );
    for (const f of r.findings) assert.equal(f.severity, FINDING_SEVERITY[f.code], f.code);
    assert.equal(r.findings[0]?.severity, "critical");
    assert.equal(r.grade, "fail");
    assert.equal(
      r.verdict,
      HOST_BUSYBOX
        ? "fail: 2 critical, 6 high, 4 medium (empty-password, private-key); 8 executables, setuid files: 1, setgid files: 1, " +
            "a shell (/bin/busybox), package managers: apt"
        : "fail: 2 critical, 6 high, 3 medium (empty-password, private-key); 7 executables, setuid files: 1, setgid files: 1, " +
            "no shell, package managers: apt",
    );
    const ping = r.findings.find((f) => f.code === "file-capability");
    assert.match(ping?.message ?? "", /also named \/usr\/bin\/ping6/);
  });

  it("finds a dynamic agent's missing interpreter and libc, and nothing missing once they are there", async () => {
    const dynamic = compileTestBinary({ static: false });
    const elf = await readElfFile(dynamic);
    const interpreter = elf?.interpreter as string;
    const tree = await scratchTree(dynamic, { allowDynamic: true });
    let r = await auditTree(tree);
    assert.deepEqual(r.agent && [r.agent.static, r.agent.interpreter, r.agent.interpreterPresent, r.agent.missingLibraries], [false, interpreter, false, ["libc.so.6"]]);
    assert.deepEqual(codes(r), ["agent-dynamic", "interpreter-missing", "library-missing"]);
    assert.equal(r.findings.find((f) => f.code === "library-missing")?.severity, "critical");

    // The host's own loader and libc, put where the host has them.
    const hostFile = (p: string): { type: "hostFile"; path: string; size: number } => ({ type: "hostFile", path: realpathSync(p), size: statSync(p).size });
    const libc = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"]
      .map((d) => join(d, "libc.so.6"))
      .find((p) => existsSync(p)) as string;
    tree.addFile(interpreter, hostFile(interpreter), { mode: 0o755 });
    // Through /etc/ld.so.conf and an include glob, as Debian configures it.
    tree.addFile("/opt/libs/libc.so.6", hostFile(libc), { mode: 0o755 });
    tree.addFile("/etc/ld.so.conf", bytesContent("include /etc/ld.so.conf.d/*.conf\n"));
    tree.addFile("/etc/ld.so.conf.d/libs.conf", bytesContent("# local\n/opt/libs\n"));
    r = await auditTree(tree);
    assert.deepEqual(r.agent && [r.agent.interpreterPresent, r.agent.missingLibraries], [true, []]);
    assert.equal(r.agent?.libraries.find((l) => l.name === "libc.so.6")?.path, "/opt/libs/libc.so.6");
    assert.deepEqual(codes(r), ["agent-dynamic"]);
    assert.equal(r.grade, "ok");
    // libc.so.6 has an x bit but is a shared library, not an executable.
    assert.deepEqual(r.executables, [AGENT, "/sbin/init"]);
  });

  it("decodes file capabilities, shadow fields and PEM blocks exactly", () => {
    assert.equal(decodeFileCapabilities(CAP_NET_RAW)?.text, "cap_net_raw=ep");
    const v3 = Buffer.from("01000003" + "00140000" + "00000000" + "00000000" + "00000000" + "e8030000", "hex");
    assert.deepEqual(decodeFileCapabilities(v3), {
      permitted: ["cap_net_bind_service", "cap_net_admin"],
      inheritable: [],
      effective: true,
      rootid: 1000,
      text: "cap_net_bind_service,cap_net_admin=ep",
    });
    assert.equal(decodeFileCapabilities(Buffer.from("0000", "hex")), undefined);
    assert.deepEqual(passwordProblems("/etc/passwd", "root:x:0:0::/root:/bin/sh\nold:abcdefgh:1:1::/:/bin/false\nnone::2:2::/:/\n", "passwd"), [
      { file: "/etc/passwd", account: "old", problem: "hash" },
      { file: "/etc/passwd", account: "none", problem: "empty" },
    ]);
    const pkcs8 = generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }) as string;
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "sec1", format: "pem" }) as string;
    assert.equal(findPrivateKey(Buffer.from(`junk\n${pkcs8}more`)), "PRIVATE KEY");
    assert.equal(findPrivateKey(Buffer.from(ec.replaceAll("\n", "\r\n"))), "EC PRIVATE KEY");
    assert.equal(findPrivateKey(Buffer.from("-----BEGIN PRIVATE KEY-----\nnot base64 at all!\n-----END PRIVATE KEY-----\n")), undefined);
    assert.equal(findPrivateKey(Buffer.from("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n")), undefined);
  });

  it("finds an OpenSSH private key made by ssh-keygen", { skip: !findExecutable("ssh-keygen") && "ssh-keygen is not installed" }, async () => {
    const dir = tempDir();
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "key")]);
    const tree = await scratchTree();
    tree.addFile("/etc/ssh/ssh_host_ed25519_key", bytesContent(readFileSync(join(dir, "key"))), { mode: 0o600 });
    tree.addFile("/etc/ssh/ssh_host_ed25519_key.pub", bytesContent(readFileSync(join(dir, "key.pub"))));
    const r = await auditTree(tree);
    assert.deepEqual(r.privateKeys, [{ path: "/etc/ssh/ssh_host_ed25519_key", label: "OPENSSH PRIVATE KEY" }]);
  });

  it("tells a BusyBox with a shell applet from one without", { skip: !HOST_BUSYBOX && "busybox is not installed" }, () => {
    const real = readFileSync(HOST_BUSYBOX as string);
    assert.ok(busyboxShellApplets(real).includes("sh"));
    assert.deepEqual(busyboxShellApplets(Buffer.from("\0[\0[[\0awk\0cat\0ls\0\0 sh \0")), []);
    assert.deepEqual(busyboxShellApplets(Buffer.from("xx\0arp\0ash\0awk\0\0")), ["ash"]);
  });
});

describe("inspect targets: every format gives the report of the tree it was built from", { skip: !isRoot && "the planted tree has a device and security xattrs" }, () => {
  /**
   * The planted tree, for ext4 with the /lost+found that the writer adds, so the
   * image holds exactly this tree (mkfs.erofs, conversely, leaves a
   * top-level lost+found out).
   */
  async function imageTree(format = ""): Promise<RootfsTree> {
    const tree = await plantedTree();
    if (format === "ext4") tree.addDirectory("/lost+found", { mode: 0o700 });
    return tree;
  }

  async function auditTarget(path: string, opts: { privileged?: boolean } = {}): Promise<AuditReport> {
    const target = await openInspectTarget(path, opts);
    try {
      const options: AuditOptions = { target: path, format: target.format, notes: target.notes, xattrsRead: target.xattrsRead };
      return await auditTree(target.tree, options);
    } finally {
      await target.dispose();
    }
  }

  for (const [name, writer] of [
    ["ext4", ext4Output],
    ["erofs (lz4hc)", createErofsWriter()],
    ["erofs (uncompressed)", createErofsWriter({ compression: "none" })],
    ["squashfs", squashfsOutput],
    ["dir", dirOutput],
    ["tar", tarOutput],
  ] as const) {
    it(name, async () => {
      const tree = await imageTree(name);
      const want = await auditTree(tree);
      const image = await buildImage(writer, tree, "rootfs");
      const got = await auditTarget(image);
      assert.equal(got.format, name.split(" ")[0]);
      assert.deepEqual(got.notes, []);
      assert.deepEqual(rootfsFacts(got), rootfsFacts(want));
    });
  }

  it("squashfs without root: the same report except the capabilities it cannot see, and says so", async () => {
    const tree = await imageTree();
    const image = await buildImage(squashfsOutput, tree, "rootfs.sqfs");
    const got = await auditTarget(image, { privileged: false });
    const want = await auditTree(tree, { xattrsRead: false });
    const drop = (r: AuditReport): unknown => {
      const { capabilities: _c, findings, severityCounts: _s, verdict: _v, ...rest } = rootfsFacts(r);
      return { ...rest, findings: findings.filter((f) => f.code !== "file-capability") };
    };
    assert.deepEqual(drop(got), drop(want));
    assert.deepEqual(got.capabilities, []);
    assert.ok(got.findings.some((f) => f.code === "xattrs-not-read"));
    assert.match(got.notes.join("\n"), /squashfs xattrs .* were not read/);
  });
});

describe("inspect targets: image readers are exact", { skip: !isRoot && "the sample tree has devices and security xattrs" }, () => {
  for (const [name, writer, privileged] of [
    ["ext4", ext4Output, undefined],
    ["erofs", createErofsWriter(), undefined],
    ["erofs uncompressed", createErofsWriter({ compression: "none" }), undefined],
    ["squashfs as root", squashfsOutput, true],
    ["squashfs via unsquashfs -pf", squashfsOutput, false],
  ] as const) {
    it(`${name}: kinds, modes, owners, mtimes, content, links, devices, hardlinks${privileged === false ? "" : ", xattrs"}`, async () => {
      const tree = imageSampleTree();
      const image = await buildImage(writer, tree, "image");
      const target = await openInspectTarget(image, privileged === undefined ? {} : { privileged });
      try {
        const got = await expectedView(target.tree);
        if (privileged === false) for (const o of got.values()) delete o.xattrs;
        assert.deepEqual(imageDifferences(got, await expectedView(tree), { extra: ["/lost+found"] }), []);
      } finally {
        await target.dispose();
      }
    });
  }

  it("refuses a truncated erofs image with a clear error", async () => {
    const image = await buildImage(createErofsWriter({ compression: "none" }), imageSampleTree(), "image.erofs");
    truncateSync(image, 4096 + 512);
    await assert.rejects(openInspectTarget(image), /not a valid erofs image: .* lies outside the image|EFORMAT/);
  });
});

describe("a3s-rootfs inspect (CLI)", () => {
  const REQUIRED_KEYS = [
    "bytes", "entries", "executables", "setuid", "setgid", "worldWritable", "shells", "packageManagers", "agent", "init", "findings", "verdict",
  ];

  it("--json prints one object with the documented keys, for a directory and an erofs image", () => {
    const dir = tempDir();
    const built = runCli(["build", "--agent", compileTestBinary(), "-o", "dir:r", "-o", "erofs:r.erofs"], { cwd: dir });
    assert.equal(built.status, 0, built.stderr);
    for (const target of ["r", "r.erofs"]) {
      const r = runCli(["inspect", target, "--json"], { cwd: dir });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.trim().split("\n").length, 1);
      const report = JSON.parse(r.stdout);
      for (const key of REQUIRED_KEYS) assert.ok(key in report, `${target}: ${key}`);
      assert.equal(typeof report.bytes, "number");
      assert.equal(report.entries, 27);
      assert.deepEqual(report.executables, [AGENT, "/sbin/init"]);
      assert.deepEqual([report.setuid, report.worldWritable, report.shells, report.packageManagers, report.findings], [[], [], [], [], []]);
      for (const role of ["agent", "init"]) {
        assert.deepEqual(Object.keys(report[role]).filter((k) => ["path", "static", "interpreter", "missingLibraries"].includes(k)).sort(), [
          "interpreter", "missingLibraries", "path", "static",
        ]);
      }
      assert.match(report.verdict, /^clean: 2 executables/);
    }
  });

  it("leaves no scratch files behind, for images and compressed archives alike", () => {
    const dir = tempDir();
    const outputs = ["ext4:r.ext4", "erofs:r.erofs", "squashfs:r.sqfs", "cpio:r.cpio.zst"];
    const built = runCli(["build", "--agent", compileTestBinary(), ...outputs.flatMap((o) => ["-o", o])], { cwd: dir });
    assert.equal(built.status, 0, built.stderr);
    for (const target of ["r.ext4", "r.erofs", "r.sqfs", "r.cpio.zst"]) {
      const scratch = tempDir("a3s-inspect-tmp-");
      const r = runCli(["inspect", target, "--json"], { cwd: dir, env: { TMPDIR: scratch } });
      assert.equal(r.status, 0, r.stderr);
      assert.match(JSON.parse(r.stdout).verdict, /^clean: 2 executables/, target);
      assert.deepEqual(readdirSync(scratch), [], target);
    }
  });

  it("prints a readable report, keeps the listing under --list, and exits 3 with --fail-on", async () => {
    const dir = tempDir();
    const tree = await plantedTree();
    await tarOutput.write(tree, { tmp: join(dir, "r.tar"), final: join(dir, "r.tar") }, { epoch: tree.epoch, warn: () => undefined });
    const human = runCli(["inspect", "r.tar"], { cwd: dir });
    assert.equal(human.status, 0, human.stderr);
    assert.match(human.stdout, /^r\.tar \(tar\): \d+ entries/);
    assert.match(human.stdout, /^verdict: fail: /m);
    assert.match(human.stdout, /^setuid: \/usr\/bin\/su$/m);
    assert.match(human.stdout, /^ {2}CRITICAL +private-key +\/root\/\.ssh\/id_rsa: /m);
    const list = runCli(["inspect", "r.tar", "--list", "--json"], { cwd: dir });
    const listing = JSON.parse(list.stdout);
    assert.equal(listing.list.find((e: { path: string }) => e.path === "/usr/bin/su").mode, 0o4755);
    assert.equal(runCli(["inspect", "r.tar", "--fail-on", "critical"], { cwd: dir }).status, 3);
    const scratch = runCli(["build", "--agent", compileTestBinary(), "-o", "tar:s.tar"], { cwd: dir });
    assert.equal(scratch.status, 0, scratch.stderr);
    assert.equal(runCli(["inspect", "s.tar", "--fail-on", "low"], { cwd: dir }).status, 0);
    assert.equal(runCli(["inspect", "s.tar", "--fail-on", "bad"], { cwd: dir }).status, 2);
  });

  it("reads a target that is not a path as a source spec, and fails clearly on an unknown one", () => {
    const r = runCli(["inspect", "nosuchkind:thing"]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /unknown source "nosuchkind:thing"/);
    const missing = runCli(["inspect", "/nonexistent/rootfs"]);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /error: \/nonexistent\/rootfs does not exist/);
  });

  it("audits an OCI image layout through the oci: source", { skip: (!isRoot || !findExecutable("umoci")) && "umoci unpack needs root and umoci" }, () => {
    const dir = tempDir();
    const layout = join(dir, "layout");
    umociImage(layout, "v1", [
      (rootfs) => {
        execFileSync("mkdir", ["-p", join(rootfs, "usr/bin"), join(rootfs, "bin")]);
        writeFileSync(join(rootfs, "usr/bin/su"), readFileSync(compileTestBinary()), { mode: 0o755 });
        execFileSync("chmod", ["4755", join(rootfs, "usr/bin/su")]);
        writeFileSync(join(rootfs, "bin/sh"), "#!/usr/bin/su\n", { mode: 0o755 });
      },
    ]);
    const r = runCli(["inspect", `oci:${layout}:v1`, "--json"], { env: { A3S_CACHE_DIR: join(dir, "cache") } });
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.equal(report.format, "source");
    assert.deepEqual(report.setuid, ["/usr/bin/su"]);
    assert.deepEqual(report.shells, ["/bin/sh"]);
    assert.equal(report.a3sGuest, false);
  });

  it("audits a host directory's own xattrs (file capabilities set with setcap semantics)", { skip: !isRoot && "setting security.capability needs root" }, () => {
    const dir = tempDir();
    const bin = join(dir, "root/usr/bin");
    execFileSync("mkdir", ["-p", bin]);
    writeFileSync(join(bin, "ping"), readFileSync(compileTestBinary()), { mode: 0o755 });
    const set = spawnSync("setfattr", ["-n", "security.capability", "-v", "0x" + CAP_NET_RAW.toString("hex"), join(bin, "ping")]);
    assert.equal(set.status, 0, String(set.stderr));
    const r = runCli(["inspect", join(dir, "root"), "--json"]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).capabilities, [{ path: "/usr/bin/ping", capabilities: "cap_net_raw=ep" }]);
  });
});
