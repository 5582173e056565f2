import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { rootVerityValue } from "../src/boot/verity-root.js";
import { isA3sError } from "../src/errors.js";
import {
  defaultShares,
  escapeConfigValue,
  kernelCmdlineArg,
  parseUserSpec,
  renderGuestConfig,
  renderGuestJob,
  type GuestConfig,
} from "../src/layout/guest-config.js";
import { DEFAULT_LAYOUT } from "../src/layout/guest-layout.js";

// The real parser: the guest init's config.c, run on the host as guest/build/config-check.
const CHECKER = fileURLToPath(new URL("../../guest/build/config-check", import.meta.url));
const noChecker = existsSync(CHECKER) ? false : `${CHECKER} is not built (make -C guest)`;

/** Values that break naive writers: spaces, newlines, escapes, quotes, '=', UTF-8 (incl. a 0xA0 byte). */
const AWKWARD = [
  "fix the failing test",
  "line one\nline two",
  "tab\there",
  "C:\\path\\to\\x",
  "\\n is not a newline",
  "key=value=more",
  "  leading and trailing  ",
  "\"double\" and 'single' quotes",
  "unicode: héllo wörld — 日本語 🚀 à",
  "ctrl:\x01\x1b[0m\x7f\r",
  "",
  "--",
];

interface CheckResult {
  status: number;
  stdout: Buffer;
  stderr: string;
}

function runChecker(args: string[]): Promise<CheckResult> {
  return new Promise((resolve, reject) => {
    execFile(CHECKER, args, { encoding: "buffer" }, (err, stdout, stderr) => {
      const status = err ? (err as { code?: unknown }).code : 0;
      if (typeof status !== "number") return reject(err ?? new Error("config-check did not run"));
      resolve({ status, stdout, stderr: stderr.toString() });
    });
  });
}

/** Undo the config escapes on bytes, as the guest does, and decode UTF-8. */
function unescapeValue(v: Buffer): string {
  const out: number[] = [];
  for (let i = 0; i < v.length; i++) {
    const b = v[i] as number;
    if (b !== 0x5c) {
      out.push(b);
      continue;
    }
    const e = String.fromCharCode(v[++i] as number);
    if (e === "\\") out.push(0x5c);
    else if (e === "n") out.push(0x0a);
    else if (e === "t") out.push(0x09);
    else if (e === "x") {
      out.push(parseInt(v.subarray(i + 1, i + 3).toString("latin1"), 16));
      i += 2;
    } else assert.fail(`unexpected escape \\${e} in config-check's output`);
  }
  return Buffer.from(out).toString("utf8");
}

/** config-check's normalized echo as [key, value] pairs, values unescaped. */
function parseEcho(echo: Buffer, version = 1): [string, string][] {
  const lines: Buffer[] = [];
  for (let start = 0; start < echo.length; ) {
    const nl = echo.indexOf(0x0a, start);
    lines.push(echo.subarray(start, nl));
    start = nl + 1;
  }
  assert.equal(lines.shift()?.toString(), `a3s-guest-config ${version}`);
  return lines.map((line) => {
    const eq = line.indexOf(0x3d);
    return [line.subarray(0, eq).toString(), unescapeValue(line.subarray(eq + 1))];
  });
}

function valuesOf(pairs: [string, string][], key: string): string[] {
  return pairs.filter(([k]) => k === key).map(([, v]) => v);
}

function rejects(fn: () => unknown, code: string, message: RegExp): void {
  assert.throws(fn, (e: unknown) => isA3sError(e, code) && message.test(e.message));
}

describe("the guest config writer against the real guest parser", { skip: noChecker }, () => {
  let dir = "";
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "a3s-guest-config-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function checkConfig(files: [string, string][]): Promise<CheckResult> {
    const paths: string[] = [];
    for (const [name, text] of files) {
      const path = join(dir, name);
      await writeFile(path, text);
      paths.push(path);
    }
    return runChecker(paths);
  }

  it("renders a full config that the parser echoes back byte for byte", async () => {
    const cfg: GuestConfig = {
      agent: "/a3s/agent/my agent",
      args: AWKWARD,
      env: ["HOME=/workspace", "WEIRD=a=b\nc\\d é", "EMPTY="],
      cwd: "/workspace/sub dir",
      user: { uid: 65534, gid: 100 },
      groups: [10, 20, 4294967294],
      hostname: "a3s-test",
      shares: defaultShares(DEFAULT_LAYOUT),
      modules: ["/lib/modules/a3s/virtio_ring.ko", "/lib/modules/a3s/9p.ko"],
      root: "/dev/vda",
      rootfstype: "erofs",
      rootflags: "noload",
      debug: true,
      stdin: "/dev/null",
      stdout: "/dev/hvc0",
      stderr: "/dev/hvc1",
      control: "/dev/hvc2",
    };
    const text = renderGuestConfig(cfg);
    const r = await checkConfig([["full.conf", text]]);
    assert.equal(r.stderr, "");
    assert.equal(r.status, 0);
    assert.equal(r.stdout.toString("utf8"), text);
    const echo = parseEcho(r.stdout);
    assert.deepEqual(valuesOf(echo, "arg"), AWKWARD);
    assert.deepEqual(valuesOf(echo, "env"), cfg.env);
    assert.deepEqual(valuesOf(echo, "share"), ["workspace:/workspace:rw,optional", "skills:/skills:ro,optional"]);
    assert.deepEqual(valuesOf(echo, "cwd"), ["/workspace/sub dir"]);
    assert.deepEqual(valuesOf(echo, "groups"), ["10,20,4294967294"]);
  });

  it("writes only the keys that are set", async () => {
    const text = renderGuestConfig({ modules: ["/lib/modules/a3s/virtio.ko"], root: "" });
    assert.equal(text, "a3s-guest-config 1\nmodule=/lib/modules/a3s/virtio.ko\nroot=\n");
    const r = await checkConfig([["small.conf", text]]);
    assert.equal(r.status, 0);
    assert.equal(r.stdout.toString(), text);
  });

  it("lays drop-ins over the config: modules and env added, args and shares replaced, single keys overridden", async () => {
    const base = renderGuestConfig({
      args: ["--from-base"],
      env: ["A=1"],
      hostname: "base",
      user: { uid: 1, gid: 1 },
      shares: defaultShares(DEFAULT_LAYOUT),
      modules: ["/m/a.ko"],
    });
    const kernel = renderGuestConfig({ modules: ["/m/b.ko", "/m/c.ko"], env: ["B=2"] });
    const run = renderGuestConfig({
      args: ["--from dropin", "x\ny"],
      hostname: "dropin",
      shares: [{ tag: "data", path: "/data", readOnly: true, optional: false }],
    });
    const r = await checkConfig([["base.conf", base], ["50-kernel.conf", kernel], ["60-run.conf", run]]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(parseEcho(r.stdout), [
      ["arg", "--from dropin"],
      ["arg", "x\ny"],
      ["env", "A=1"],
      ["env", "B=2"],
      ["user", "1:1"],
      ["hostname", "dropin"],
      ["share", "data:/data:ro"],
      ["module", "/m/a.ko"],
      ["module", "/m/b.ko"],
      ["module", "/m/c.ko"],
    ]);
  });

  it("keeps the earlier args and shares when a drop-in has none", async () => {
    const base = renderGuestConfig({ args: ["keep", "me"], shares: defaultShares(DEFAULT_LAYOUT) });
    const r = await checkConfig([["keep.conf", base], ["50-k.conf", renderGuestConfig({ modules: ["/m/x.ko"] })]]);
    assert.equal(r.status, 0, r.stderr);
    const echo = parseEcho(r.stdout);
    assert.deepEqual(valuesOf(echo, "arg"), ["keep", "me"]);
    assert.equal(valuesOf(echo, "share").length, 2);
  });

  it("names the drop-in and the line of an error", async () => {
    const bad = "a3s-guest-config 1\nhostname=a\nhostname=b\n";
    const r = await checkConfig([["ok.conf", renderGuestConfig({})], ["70-bad.conf", bad]]);
    assert.equal(r.status, 125);
    assert.match(r.stderr, /70-bad\.conf:3: key "hostname" given twice/);
    const wrongVersion = await checkConfig([["ok2.conf", renderGuestConfig({})], ["v3.conf", "a3s-guest-config 3\n"]]);
    assert.equal(wrongVersion.status, 125);
    assert.match(wrongVersion.stderr, /v3\.conf:1: unsupported config version "3" \(this init reads versions 1 to 2\)/);
  });

  it("refuses a drop-in that does not exist, so a wrong path cannot pass", async () => {
    const base = join(dir, "exists.conf");
    await writeFile(base, renderGuestConfig({}));
    const r = await runChecker([base, join(dir, "missing.conf")]);
    assert.equal(r.status, 125);
    assert.match(r.stderr, /missing\.conf: No such file or directory/);
  });

  it("passes args and env through the kernel command line unchanged", async () => {
    const env = ["LANG=C.UTF-8", "MSG=hi there \"you\"\n\\", "U=日本 à"];
    const tokens = [...AWKWARD.map((a) => kernelCmdlineArg("arg", a)), ...env.map((e) => kernelCmdlineArg("env", e))];
    for (const t of tokens) assert.match(t, /^a3s\.(arg|env)=[!#-~]*$/, `${t} is one quote-free printable token`);
    const line = ["console=ttyS0", "panic=-1", kernelCmdlineArg("user", "65534:65534"), ...tokens].join(" ");
    const r = await runChecker(["--cmdline", line]);
    assert.equal(r.status, 0, r.stderr);
    const echo = parseEcho(r.stdout);
    assert.deepEqual(valuesOf(echo, "arg"), AWKWARD);
    assert.deepEqual(valuesOf(echo, "env"), env);
    assert.deepEqual(valuesOf(echo, "user"), ["65534:65534"]);
  });

  it("takes the root's dm-verity parameters on the command line, as run writes them, and refuses malformed ones", async () => {
    const value = rootVerityValue({ rootHash: "ab".repeat(32), salt: "", dataBlocks: 24, hashStartBlock: 25, source: "sidecar" });
    assert.equal(value, `${"ab".repeat(32)}:-:24:25`);
    const r = await runChecker(["--cmdline", kernelCmdlineArg("rootverity", value)]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(parseEcho(r.stdout), [["rootverity", value]]);
    for (const [bad, why] of [
      [`${"ab".repeat(31)}:-:24:25`, /root hash must be 64 hex digits/],
      [`${"ab".repeat(32)}:xyz:24:25`, /salt must be hex/],
      [`${"ab".repeat(32)}:00:0:25`, /DATABLOCKS must be a positive/],
      [`${"ab".repeat(32)}:00:24:24`, /HASHSTART must be a decimal block number past the data/],
      [`${"ab".repeat(32)}:00:24`, /rootverity must be ROOTHASH:SALT:DATABLOCKS:HASHSTART/],
    ] as const) {
      const e = await runChecker(["--cmdline", kernelCmdlineArg("rootverity", bad)]);
      assert.equal(e.status, 125, bad);
      assert.match(e.stderr, why);
    }
  });

  it("reads kernel-quoted tokens the way the protocol says", async () => {
    const r = await runChecker(["--cmdline", '"a3s.arg=hello world" a3s.arg="a b" a3s.debug -- a3s.arg=ignored']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(parseEcho(r.stdout), [["arg", "hello world"], ["arg", "a b"], ["debug", "1"]]);
    const unknown = await runChecker(["--cmdline", "a3s.agnet=/x"]);
    assert.equal(unknown.status, 125);
    assert.match(unknown.stderr, /unknown key "a3s\.agnet=\/x"/);
  });
});

describe("the job writer (guest protocol 2) against the real guest parser", { skip: noChecker }, () => {
  let dir = "";
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "a3s-guest-job-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function check(name: string, text: string, ...flags: string[]): Promise<CheckResult> {
    const path = join(dir, name);
    await writeFile(path, text);
    return runChecker([...flags, path]);
  }

  it("renders a job that the parser reads back: the run's keys, the provided shares, entropy and clock, then \"end\"", async () => {
    const entropy = Buffer.alloc(64, 0xa5);
    const text = renderGuestJob({
      args: AWKWARD,
      env: ["RUN_ID=42", "X=a\nb"],
      user: { uid: 65534, gid: 65534 },
      hostname: "run-42",
      providedShares: ["workspace"],
      entropy,
      clockMs: 1_712_345_678_901,
    });
    assert.ok(text.endsWith("\nend\n"), text);
    const r = await check("job.txt", text.slice(0, -"end\n".length), "--job");
    assert.equal(r.stderr, "");
    assert.equal(r.status, 0);
    assert.equal(r.stdout.toString(), text.slice(0, -"end\n".length), "the parser echoes the job unchanged");
    const echo = parseEcho(r.stdout, 2);
    assert.deepEqual(valuesOf(echo, "arg"), AWKWARD);
    assert.deepEqual(valuesOf(echo, "shares"), ["workspace"]);
    assert.deepEqual(valuesOf(echo, "entropy"), [entropy.toString("hex")]);
    assert.deepEqual(valuesOf(echo, "clock"), ["1712345678.901"]);
  });

  it("renders the workspace keys (overlay, scratch, tmpfs) so that the parser reads them back, and refuses bad ones on both sides", async () => {
    const text = renderGuestJob({
      providedShares: ["workspace"],
      entropy: Buffer.alloc(16, 2),
      clockMs: 0,
      overlay: "workspace",
      scratch: "a3s-scratch",
      tmpfs: ["/workspace/node_modules:2g", "/tmp/big"],
    });
    const r = await check("workspace-job.txt", text.slice(0, -"end\n".length), "--job");
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.toString(), text.slice(0, -"end\n".length), "the parser echoes the job unchanged");
    assert.deepEqual(valuesOf(parseEcho(r.stdout, 2), "tmpfs"), ["/workspace/node_modules:2g", "/tmp/big"]);
    for (const [name, line, message] of [
      ["ovl.txt", "overlay=a:b", /overlay must be a share's TAG/],
      ["scr.txt", "scratch=has space", /scratch must be a disk serial/],
      ["tmp.txt", "tmpfs=/x:12q", /tmpfs SIZE must be a number/],
      ["rel.txt", "tmpfs=x", /tmpfs must be PATH\[:SIZE\] with an absolute PATH/],
    ] as const) {
      const bad = await check(name, `a3s-guest-config 2\n${line}\n`, "--job");
      assert.equal(bad.status, 125, name);
      assert.match(bad.stderr, message, name);
    }
    const inFile = await check("tmpfs.conf", "a3s-guest-config 2\ntmpfs=/x\n");
    assert.match(inFile.stderr, /key "tmpfs" cannot be set in a config file/);
    rejects(() => renderGuestJob({ providedShares: [], entropy: Buffer.alloc(16), clockMs: 0, tmpfs: ["/a/../b"] }), "ECONFIG", /without "\.\."/);
    rejects(() => renderGuestJob({ providedShares: [], entropy: Buffer.alloc(16), clockMs: 0, tmpfs: ["/a:1t"] }), "ECONFIG", /SIZE must be a number/);
  });

  it("writes an empty shares= when the host provides none, so a restored machine mounts none of its template's", async () => {
    const text = renderGuestJob({ providedShares: [], entropy: Buffer.alloc(16, 1), clockMs: 0 });
    assert.match(text, /^shares=$/m);
    const r = await check("none.txt", text.slice(0, -"end\n".length), "--job");
    assert.equal(r.status, 0, r.stderr);
  });

  it("keeps each key where it belongs: the boot's keys out of a job, the run's state out of images and the command line, version 2 keys out of version 1", async () => {
    const cases: [string, string, string[], RegExp][] = [
      ["module.txt", "a3s-guest-config 2\nmodule=/x.ko\n", ["--job"], /job:2: key "module" cannot be set by a job/],
      ["channel.txt", "a3s-guest-config 2\nstdout=/dev/null\n", ["--job"], /job:2: key "stdout" cannot be set by a job/],
      ["entropy.conf", `a3s-guest-config 2\nentropy=${"00".repeat(32)}\n`, [], /entropy\.conf:2: key "entropy" cannot be set in a config file/],
      ["v1.conf", "a3s-guest-config 1\njob=1\n", [], /v1\.conf:2: key "job" needs version 2/],
      ["short.txt", "a3s-guest-config 2\nentropy=00ff\n", ["--job"], /job:2: entropy: entropy must be 16 to 512 bytes in hex/],
      ["clock.txt", "a3s-guest-config 2\nclock=17.1234567890\n", ["--job"], /job:2: clock: clock must be SECONDS/],
      ["tags.txt", "a3s-guest-config 2\nshares=workspace,,skills\n", ["--job"], /job:2: shares: shares must be TAG,TAG/],
    ];
    for (const [name, text, flags, message] of cases) {
      const r = await check(name, text, ...flags);
      assert.equal(r.status, 125, name);
      assert.match(r.stderr, message, name);
    }
    const cmdline = await runChecker(["--cmdline", `a3s.job=1 a3s.entropy=${"00".repeat(32)}`]);
    assert.equal(cmdline.status, 125);
    assert.match(cmdline.stderr, /key "entropy" cannot be set on the kernel command line/);
    const job = await runChecker(["--cmdline", kernelCmdlineArg("job", "1")]);
    assert.deepEqual(parseEcho(job.stdout, 2), [["job", "1"]]);
    // The host names its VMM's channel devices on the command line (§4, §6).
    const channels = await runChecker(["--cmdline", [kernelCmdlineArg("stdout", "/dev/vport1p1"), kernelCmdlineArg("control", "/dev/vport1p3")].join(" ")]);
    assert.equal(channels.status, 0, channels.stderr);
    assert.deepEqual(parseEcho(channels.stdout, 1), [["stdout", "/dev/vport1p1"], ["control", "/dev/vport1p3"]]);
  });

  it("refuses entropy outside 16 to 512 bytes on the host already", () => {
    rejects(() => renderGuestJob({ providedShares: [], entropy: Buffer.alloc(8), clockMs: 0 }), "ECONFIG", /16 to 512 bytes, not 8/);
  });
});

describe("config-check, the guest's parser on the host", { skip: noChecker }, () => {
  let dir = "";
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "a3s-config-check-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("accepts the documented example config and prints it in canonical form", async () => {
    const example = fileURLToPath(new URL("../../guest/config.example", import.meta.url));
    const r = await runChecker([example]);
    assert.equal(r.status, 0, r.stderr);
    const echo = parseEcho(r.stdout, 2);
    assert.deepEqual(valuesOf(echo, "arg"), ["--task", "fix the failing test\nthen run it"]);
    assert.deepEqual(valuesOf(echo, "share"), ["workspace:/workspace:rw", "skills:/skills:ro,optional"]);
    assert.equal(valuesOf(echo, "module").length, 11);
    // Canonical form: no comments, and a second pass changes nothing.
    const again = join(dir, "again.conf");
    await writeFile(again, r.stdout);
    assert.deepEqual((await runChecker([again])).stdout, r.stdout);
  });

  it("refuses files the guest would refuse, with the status the guest reports", async () => {
    const cases: [string, string | Buffer, RegExp][] = [
      ["nul.conf", Buffer.from("a3s-guest-config 1\nhostname=a\0b\n"), /nul\.conf: contains a NUL byte/],
      ["big.conf", `a3s-guest-config 1\n${"# x\n".repeat(300_000)}`, /big\.conf: larger than 1 MiB/],
      ["header.conf", "hostname=a\n", /header\.conf:1: not an a3s guest config/],
      ["escape.conf", "a3s-guest-config 1\narg=a\\qb\n", /escape\.conf:2: arg: unknown escape/],
      ["zero.conf", "a3s-guest-config 1\narg=\\x00\n", /zero\.conf:2: arg: \\x00 is not allowed/],
      ["user.conf", "a3s-guest-config 1\nuser=nobody\n", /user\.conf:2: user: user must be UID:GID/],
    ];
    for (const [name, text, message] of cases) {
      const path = join(dir, name);
      await writeFile(path, text);
      const r = await runChecker([path]);
      assert.equal(r.status, 125, name);
      assert.match(r.stderr, message, name);
      assert.equal(r.stdout.length, 0, name);
    }
  });

  it("answers a usage error with status 2, and the init refuses to run anywhere but as PID 1", async () => {
    assert.equal((await runChecker([])).status, 2);
    assert.equal((await runChecker(["--check-config", "x"])).status, 2);
    const init = fileURLToPath(new URL("../../guest/build/init", import.meta.url));
    const r = await new Promise<number>((resolve) => execFile(init, ["--check-config", "x"], (err) => resolve(err ? Number(err.code) : 0)));
    assert.equal(r, 2);
  });
});

describe("guest config values the writer refuses", () => {
  it("refuses relative paths", () => {
    rejects(() => renderGuestConfig({ agent: "a3s/agent" }), "ECONFIG", /agent: "a3s\/agent" is not an absolute path/);
    rejects(() => renderGuestConfig({ modules: ["virtio.ko"] }), "ECONFIG", /module: .* not an absolute path/);
    rejects(() => renderGuestConfig({ root: "vda" }), "ECONFIG", /root: .* not an absolute path/);
    rejects(() => kernelCmdlineArg("cwd", "workspace"), "ECONFIG", /cwd: .* not an absolute path/);
  });

  it("refuses NUL bytes and lone surrogates anywhere", () => {
    rejects(() => renderGuestConfig({ args: ["a\0b"] }), "ECONFIG", /NUL byte/);
    rejects(() => renderGuestConfig({ hostname: "h\0" }), "ECONFIG", /NUL byte/);
    rejects(() => kernelCmdlineArg("arg", "\0"), "ECONFIG", /NUL byte/);
    rejects(() => escapeConfigValue("x\uD800y"), "ECONFIG", /lone surrogate/);
  });

  it("refuses env entries without a name and '='", () => {
    rejects(() => renderGuestConfig({ env: ["NOVALUE"] }), "ECONFIG", /not NAME=VALUE/);
    rejects(() => renderGuestConfig({ env: ["=x"] }), "ECONFIG", /not NAME=VALUE/);
    rejects(() => kernelCmdlineArg("env", "NOVALUE"), "ECONFIG", /not NAME=VALUE/);
  });

  it("refuses share tags that are empty or hold ':' or ',', and share paths with ':'", () => {
    const share = { path: "/w", readOnly: false, optional: false };
    rejects(() => renderGuestConfig({ shares: [{ ...share, tag: "" }] }), "ECONFIG", /share tag "" must be non-empty/);
    rejects(() => renderGuestConfig({ shares: [{ ...share, tag: "a:b" }] }), "ECONFIG", /without ':' or ','/);
    rejects(() => renderGuestConfig({ shares: [{ ...share, tag: "a,b" }] }), "ECONFIG", /without ':' or ','/);
    rejects(() => renderGuestConfig({ shares: [{ ...share, tag: "w", path: "/a:b" }] }), "ECONFIG", /contains ':'/);
    rejects(() => renderGuestConfig({ shares: [{ ...share, tag: "w", path: "w" }] }), "ECONFIG", /not an absolute path/);
  });

  it("refuses ids out of range, long hostnames and keys the command line does not take", () => {
    rejects(() => renderGuestConfig({ user: { uid: -1, gid: 0 } }), "ECONFIG", /not a uid\/gid/);
    rejects(() => renderGuestConfig({ groups: [4294967295] }), "ECONFIG", /not a uid\/gid/);
    rejects(() => renderGuestConfig({ user: { uid: 1.5, gid: 0 } }), "ECONFIG", /not a uid\/gid/);
    rejects(() => renderGuestConfig({ hostname: "é".repeat(33) }), "ECONFIG", /longer than 64 bytes/);
    rejects(() => kernelCmdlineArg("module", "/m.ko"), "ECONFIG", /cannot be set on the kernel command line/);
    rejects(() => kernelCmdlineArg("agnet", "/x"), "ECONFIG", /cannot be set on the kernel command line/);
  });
});

describe("parseUserSpec", () => {
  it("reads root, nobody, UID and UID:GID", () => {
    assert.deepEqual(parseUserSpec("root"), { uid: 0, gid: 0 });
    assert.deepEqual(parseUserSpec("nobody"), { uid: 65534, gid: 65534 });
    assert.deepEqual(parseUserSpec("1000"), { uid: 1000, gid: 1000 });
    assert.deepEqual(parseUserSpec("1000:100"), { uid: 1000, gid: 100 });
    assert.deepEqual(parseUserSpec("4294967294:0"), { uid: 4294967294, gid: 0 });
  });

  it("refuses names, signs, empty parts and ids the kernel reserves", () => {
    for (const bad of ["alice", "", "1000:", ":100", "-1", "+5", "1:2:3", "4294967295", "1e3", " 1"]) {
      rejects(() => parseUserSpec(bad), "EUSAGE", /invalid user/);
    }
  });
});

describe("escapeConfigValue and kernelCmdlineArg", () => {
  it("escape only what the config format needs", () => {
    assert.equal(escapeConfigValue("a b=c \\ \n \t \x01 é"), "a b=c \\\\ \\n \\t \\x01 é");
  });

  it("make one printable token with no space or quote", () => {
    assert.equal(kernelCmdlineArg("arg", 'say "hi" à\\'), "a3s.arg=say\\x20\\x22hi\\x22\\x20\\xc3\\xa0\\\\");
    assert.equal(kernelCmdlineArg("debug", "1"), "a3s.debug=1");
  });
});
