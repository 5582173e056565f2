// The parts of snapshots and restores that need no VM: the manifest and
// the checks that refuse a snapshot, QEMU's arguments for a template and a
// restore, the firmware they start through, and the host's half of the control channel (the job when the
// guest is ready, "poweroff" only once every byte of output is in).
import assert from "node:assert/strict";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parseControlLine } from "../src/boot/control-lines.js";
import { GuestChannel } from "../src/boot/guest-channels.js";
import { GuestConversation } from "../src/boot/guest-conversation.js";
import { qbootFirmware } from "../src/boot/microvm-machine.js";
import { qemuArgs, type VmSpec } from "../src/boot/qemu-command.js";
import { prepareRestore } from "../src/boot/restore-machine.js";
import { checkQemuVersion, checkSnapshotMatches, OpenSnapshot, parseManifest, type SnapshotManifest } from "../src/boot/snapshot-manifest.js";
import { isA3sError } from "../src/errors.js";
import { tempDir } from "./helpers/temp-dir.js";

const SHA_A = "a".repeat(64);
const SHA_B = "b".repeat(64);

const manifest: SnapshotManifest = {
  format: 2,
  createdAt: "2026-01-01T00:00:00.000Z",
  image: { path: "/images/agent.cpio", kind: "cpio", sha256: SHA_A, bytes: 1000 },
  kernel: { origin: "a3s-microvm:6.12", path: "/k/vmlinux", sha256: SHA_A, bytes: 20 },
  qemu: { version: "10.0.2 (Debian 1:10.0.2+ds-2)" },
  machine: { accel: "tcg", cpus: 1, memoryMiB: 256, transport: "9p", shares: [{ tag: "workspace", readOnly: false }], tscKhz: 2_300_000 },
  snapshotMs: 10,
  bytes: { state: 90_000, memory: 40_000_000, disk: 0 },
};
const snap = { path: "/snaps/agent.snap", manifest };

function refusedWith(fn: () => void, message: RegExp): void {
  assert.throws(fn, (e: unknown) => isA3sError(e, "ESNAPSHOT") && message.test(e.message) && e.subject === "/snaps/agent.snap");
}

describe("a snapshot's manifest and what a restore checks", () => {
  it("accepts a snapshot that matches every stated option, and one asked nothing", () => {
    checkSnapshotMatches(snap, {});
    checkSnapshotMatches(snap, { imageSha256: SHA_A, kernel: { origin: "a3s-microvm:6.12", sha256: SHA_A, path: "/k/vmlinux" }, memoryMiB: 256, cpus: 1, accel: "tcg", transport: "9p", tscKhz: 2_300_000 });
  });

  it("refuses another image, another kernel, other machine options and another TSC rate, saying which", () => {
    refusedWith(() => checkSnapshotMatches(snap, { imageSha256: SHA_B, imagePath: "other.cpio" }), /made from another image \(\/images\/agent\.cpio, sha256 aaaaaaaaaaaa…\), not other\.cpio/);
    refusedWith(() => checkSnapshotMatches(snap, { kernel: { origin: "debian:linux-image", sha256: SHA_B, path: "/d/vmlinux" } }), /made with another kernel \(a3s-microvm:6\.12.*not debian:linux-image/);
    refusedWith(() => checkSnapshotMatches(snap, { memoryMiB: 512 }), /made with --memory 256, not 512/);
    refusedWith(() => checkSnapshotMatches(snap, { cpus: 2 }), /made with --cpus 1, not 2/);
    refusedWith(() => checkSnapshotMatches(snap, { transport: "virtiofs" }), /made with --transport 9p, not virtiofs/);
    refusedWith(() => checkSnapshotMatches(snap, { tscKhz: 3_000_000 }), /TSC of 2300000 kHz, this host's is 3000000 kHz/);
    refusedWith(() => checkQemuVersion(snap, "9.2.0"), /made by QEMU 10\.0\.2 \(Debian 1:10\.0\.2\+ds-2\), this is QEMU 9\.2\.0/);
    checkQemuVersion(snap, manifest.qemu.version);
  });

  it("reads a manifest back, and refuses a damaged or foreign one naming the file", () => {
    assert.deepEqual(parseManifest(JSON.stringify(manifest), "/s"), manifest);
    const bad = (m: unknown, message: RegExp): void =>
      assert.throws(() => parseManifest(typeof m === "string" ? m : JSON.stringify(m), "/s"), (e: unknown) => isA3sError(e, "ESNAPSHOT") && e.message.startsWith("/s/snapshot.json: ") && message.test(e.message));
    bad("{", /not JSON/);
    bad({ ...manifest, format: 1 }, /format 1, this a3s-rootfs reads format 2/);
    bad({ ...manifest, image: { ...manifest.image, sha256: "x" } }, /no valid image/);
    bad({ ...manifest, machine: { ...manifest.machine, memoryMiB: "256" } }, /no valid machine options/);
    bad({ ...manifest, machine: { ...manifest.machine, shares: [{ tag: "a/b", readOnly: true }] } }, /a share without a valid tag/);
  });

  it("reads whether a snapshot's machine had ACPI, absent (it had) in older ones, and restores the same machine", () => {
    for (const acpi of [true, false]) {
      const m = { ...manifest, machine: { ...manifest.machine, acpi } };
      assert.deepEqual(parseManifest(JSON.stringify(m), "/s"), m);
    }
    assert.equal(parseManifest(JSON.stringify(manifest), "/s").machine.acpi, undefined);
    for (const acpi of ["off", 0, null]) {
      assert.throws(
        () => parseManifest(JSON.stringify({ ...manifest, machine: { ...manifest.machine, acpi } }), "/s"),
        (e: unknown) => isA3sError(e, "ESNAPSHOT") && /no valid machine options/.test(e.message),
        String(acpi),
      );
    }
  });

  it("reads the firmware a snapshot's machine started with, absent in older ones, and refuses any other value (a path is never taken from it)", () => {
    for (const firmware of ["qboot", "default"] as const) {
      const m = { ...manifest, machine: { ...manifest.machine, firmware } };
      assert.deepEqual(parseManifest(JSON.stringify(m), "/s"), m);
    }
    assert.equal(parseManifest(JSON.stringify(manifest), "/s").machine.firmware, undefined);
    for (const firmware of ["/tmp/evil.rom", "qboot.rom", 1, null]) {
      assert.throws(
        () => parseManifest(JSON.stringify({ ...manifest, machine: { ...manifest.machine, firmware } }), "/s"),
        (e: unknown) => isA3sError(e, "ESNAPSHOT") && /no valid machine options/.test(e.message),
        String(firmware),
      );
    }
  });

  it("opening a directory that is no snapshot, or none at all, says so with the user's path", async () => {
    const dir = tempDir();
    mkdirSync(join(dir, "empty"));
    writeFileSync(join(dir, "file"), "x");
    await assert.rejects(OpenSnapshot.open(join(dir, "empty")), (e: unknown) => isA3sError(e, "ESNAPSHOT") && /empty is not a snapshot: it has no snapshot\.json/.test(e.message));
    await assert.rejects(OpenSnapshot.open(join(dir, "missing")), (e: unknown) => isA3sError(e, "ENOENT") && /missing does not exist/.test(e.message));
    await assert.rejects(OpenSnapshot.open(join(dir, "file")), (e: unknown) => isA3sError(e, "ESNAPSHOT") && /file is not a snapshot directory/.test(e.message));
  });
});

describe("QEMU's arguments for a template and a restore", () => {
  const base: VmSpec = {
    kernelPath: "/k/vmlinux",
    initrd: "/w/initrd.img",
    cmdline: "console=ttyS0 a3s.job=1",
    accel: "tcg",
    cpus: 1,
    memoryMiB: 256,
    transport: "9p",
    shares: [],
    sockets: { stdout: "/w/out.sock", stderr: "/w/err.sock", control: "/w/ctl.sock", changes: "/w/chg.sock" },
    consoleLog: "/w/console.log",
    qmpSocket: "/w/qmp.sock",
  };

  it("a template boots paused, its RAM in a shared file, with QMP", () => {
    const a = qemuArgs({ ...base, memoryFile: { path: "/s/memory", share: true, readOnly: false }, start: "paused" }).join(" ");
    assert.match(a, /^-M microvm,pit=off,pic=off,memory-backend=mem /);
    assert.match(a, /-object memory-backend-file,id=mem,size=256M,mem-path=\/s\/memory,share=on( |$)/);
    assert.match(a, /-chardev socket,id=qmp,path=\/w\/qmp\.sock -mon chardev=qmp,mode=control/);
    assert.match(a, / -S( |$)/);
    assert.match(a, /-kernel \/k\/vmlinux -initrd \/w\/initrd\.img -append console=ttyS0 a3s\.job=1/);
  });

  it("a restore loads no kernel, maps the snapshot's memory privately from a read-only file, and waits for the state", () => {
    const a = qemuArgs({ ...base, memoryFile: { path: "/proc/1/fd/9/memory", share: false, readOnly: true }, start: "incoming" });
    const line = a.join(" ");
    assert.match(line, /-object memory-backend-file,id=mem,size=256M,mem-path=\/proc\/1\/fd\/9\/memory,share=off,readonly=on,rom=off/);
    assert.match(line, /-incoming defer/);
    for (const flag of ["-kernel", "-initrd", "-append", "-S"]) assert.ok(!a.includes(flag), `${flag} in ${line}`);
  });

  it("a template and its restore start through the firmware given, and through QEMU's default without one", () => {
    for (const start of ["paused", "incoming"] as const) {
      const a = qemuArgs({ ...base, start, firmware: "/usr/share/qemu/qboot.rom" });
      assert.equal(a[a.indexOf("-bios") + 1], "/usr/share/qemu/qboot.rom", start);
      assert.ok(!qemuArgs({ ...base, start }).includes("-bios"), start);
    }
  });
});

describe("qboot, where QEMU ships it", () => {
  it("is share/qemu/qboot.rom beside the QEMU binary's bin/ (through links), and absent where that file is not", () => {
    const dir = tempDir();
    mkdirSync(join(dir, "with/bin"), { recursive: true });
    mkdirSync(join(dir, "with/share/qemu"), { recursive: true });
    writeFileSync(join(dir, "with/bin/qemu-system-x86_64"), "");
    writeFileSync(join(dir, "with/share/qemu/qboot.rom"), "");
    mkdirSync(join(dir, "links"));
    symlinkSync(join(dir, "with/bin/qemu-system-x86_64"), join(dir, "links/qemu-system-x86_64"));
    mkdirSync(join(dir, "without/bin"), { recursive: true });
    writeFileSync(join(dir, "without/bin/qemu-system-x86_64"), "");
    assert.equal(qbootFirmware(join(dir, "with/bin/qemu-system-x86_64")), join(dir, "with/share/qemu/qboot.rom"));
    assert.equal(qbootFirmware(join(dir, "links/qemu-system-x86_64")), join(dir, "with/share/qemu/qboot.rom"));
    assert.equal(qbootFirmware(join(dir, "without/bin/qemu-system-x86_64")), undefined);
    assert.equal(qbootFirmware(join(dir, "missing/bin/qemu-system-x86_64")), undefined);
  });

  it("a snapshot made through qboot is not restored by a QEMU without it (its ROM is in the machine state), and says so before starting anything", async () => {
    const dir = tempDir();
    mkdirSync(join(dir, "snap"));
    writeFileSync(join(dir, "snap/snapshot.json"), JSON.stringify({ ...manifest, machine: { ...manifest.machine, firmware: "qboot" } }));
    const snapshot = await OpenSnapshot.open(join(dir, "snap"));
    try {
      await assert.rejects(
        prepareRestore(snapshot, { qemu: join(dir, "no-qboot/bin/qemu-system-x86_64"), work: dir, children: [] }),
        (e: unknown) => isA3sError(e, "ESNAPSHOT") && /was made with the qboot firmware, which .*no-qboot\/bin\/qemu-system-x86_64 does not have/.test(e.message),
      );
    } finally {
      snapshot.close();
    }
  });
});

/**
 * Waits until what the guest's end of a socket has read satisfies `done`:
 * the bytes cross a real socket, so the test waits for them, never for a
 * fixed time (a fixed 50 ms was too short on a loaded host).
 */
async function readUntil(read: () => string, done: (text: string) => boolean): Promise<string> {
  const giveUp = Date.now() + 30_000;
  while (!done(read())) {
    if (Date.now() > giveUp) assert.fail(`the guest's end never read what was expected; it read: ${JSON.stringify(read())}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return read();
}

describe("the host's half of the control channel", () => {
  it("sends the job on `ready` with a current clock and fresh entropy, and `poweroff` only once the counted output is in", async () => {
    const dir = tempDir();
    const received: string[] = [];
    const channel = await GuestChannel.listen(join(dir, "ctl.sock"), () => {});
    const guestEnd = connect(join(dir, "ctl.sock"));
    guestEnd.on("data", (b: Buffer) => received.push(b.toString()));
    try {
      const talk = new GuestConversation(channel, { args: ["--task", "x"], providedShares: ["workspace"] });
      const before = Date.now();
      talk.event(parseControlLine("a3s ready 1200.5")!);
      talk.event(parseControlLine("a3s ready 1200.5")!); // a second ready sends nothing
      const exit = parseControlLine("a3s agent-exit 1300.000 0 10 3");
      assert.deepEqual(exit, { kind: "agent-exit", ms: 1300, status: 0, output: { stdout: 10, stderr: 3 } });
      talk.event(exit!);
      talk.output("stdout", 10);
      talk.output("stderr", 2);
      // A line written after everything above: once it is read, all of that was read too.
      channel.write("# sync\n");
      const job = (await readUntil(() => received.join(""), (t) => t.endsWith("# sync\n"))).slice(0, -"# sync\n".length);
      assert.equal(job.match(/^a3s-guest-config 2$/gm)?.length, 1, job);
      assert.ok(job.endsWith("\nend\n"), job);
      assert.match(job, /^arg=--task\narg=x$/m);
      assert.match(job, /^shares=workspace$/m);
      assert.match(job, /^entropy=[0-9a-f]{128}$/m);
      const clock = Number(/^clock=(\d+\.\d{3})$/m.exec(job)?.[1]) * 1000;
      assert.ok(clock >= before - 1 && clock <= Date.now(), `clock ${clock}`);
      assert.ok(!job.includes("poweroff"), "poweroff before the last stderr byte");
      talk.output("stderr", 1);
      assert.ok((await readUntil(() => received.join(""), (t) => t.endsWith("poweroff\n"))).endsWith("end\n# sync\npoweroff\n"));
    } finally {
      guestEnd.destroy();
      channel.close();
    }
  });

  it("two jobs never carry the same entropy", async () => {
    const dir = tempDir();
    const texts: string[] = [];
    for (const i of [1, 2]) {
      const channel = await GuestChannel.listen(join(dir, `c${i}.sock`), () => {});
      const end = connect(join(dir, `c${i}.sock`));
      const got: Buffer[] = [];
      end.on("data", (b: Buffer) => got.push(b));
      new GuestConversation(channel, { providedShares: [] }).sendJob();
      const job = await readUntil(() => Buffer.concat(got).toString(), (t) => t.endsWith("\nend\n"));
      texts.push(/^entropy=(.*)$/m.exec(job)?.[1] ?? "");
      end.destroy();
      channel.close();
    }
    assert.equal(texts[0]?.length, 128);
    assert.notEqual(texts[0], texts[1]);
  });
});
