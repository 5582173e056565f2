// The boot path's pure parts, without starting a VM.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync, statfsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { controlLinesInConsole, LineSplitter, parseControlLine } from "../src/boot/control-lines.js";
import { debianKernel } from "../src/boot/debian-kernel.js";
import { tscKhzFromCpuinfo } from "../src/boot/host-tsc.js";
import { prepareBootMedia } from "../src/boot/boot-media.js";
import { detectBootImage } from "../src/boot/image-kind.js";
import { checkGuestMemoryDir } from "../src/boot/guest-memory-dir.js";
import { kernelCmdlineOptions, modulesFor, type KernelBundle } from "../src/boot/kernel-bundle.js";
import { parseModinfo } from "../src/boot/modinfo.js";
import { moduleLoadOrder } from "../src/boot/module-closure.js";
import { withoutModuleSignature } from "../src/boot/module-signature.js";
import { kernelCommandLine } from "../src/boot/kernel-cmdline.js";
import { loadKernelPatches } from "../src/boot/kernel-patches.js";
import { LAPIC_TIMER_PERIOD_PARAM, LAPIC_TIMER_PERIOD_PATCH, lapicTimerPeriod } from "../src/boot/lapic-timer.js";
import { microvmKernelBundle } from "../src/boot/microvm-kernel-cache.js";
import { qemuArgs, type VmSpec } from "../src/boot/qemu-command.js";
import { skipsVirtiofsFlush, VIRTIOFS_NO_FLUSH_PARAM, VIRTIOFS_NO_FLUSH_PATCH } from "../src/boot/virtiofs-flush.js";
import { isA3sError, RootfsBuilder } from "../src/index.js";
import { findExecutable } from "../src/util/host-tool.js";
import { compileTestBinary } from "./helpers/static-binary.js";
import { tempDir } from "./helpers/temp-dir.js";

describe("control lines", () => {
  it("parses every event of protocol version 1 and ignores what does not parse", () => {
    assert.deepEqual(parseControlLine("a3s init-start 1881.777"), { kind: "init-start", ms: 1881.777 });
    assert.deepEqual(parseControlLine("a3s agent-exit 2422.237 7\r"), { kind: "agent-exit", ms: 2422.237, status: 7 });
    assert.deepEqual(parseControlLine("a3s signal 10.000 15 control"), { kind: "signal", ms: 10, signal: 15, source: "control" });
    assert.deepEqual(parseControlLine("a3s error 127 agent /x: not found"), { kind: "error", status: 127, message: "agent /x: not found" });
    assert.deepEqual(parseControlLine("a3s agent-exit 1.000 3 future-field"), { kind: "agent-exit", ms: 1, status: 3 });
    assert.deepEqual(parseControlLine("a3s job 40.125"), { kind: "job", ms: 40.125 });
    for (const junk of ["a3s future-event 1", "a3s agent-exit soon 3", "hello", "a3s init-start", "x".repeat(5000)]) {
      assert.equal(parseControlLine(junk), undefined, junk);
    }
  });

  it("finds prefixed control lines in a console log", () => {
    const log = "[    1.0] Linux\r\na3s-control: a3s error 125 /etc/a3s/guest.conf:2: unknown key \"x\"\r\nnoise a3s-control: a3s poweroff 1\n";
    assert.deepEqual(controlLinesInConsole(log), [{ kind: "error", status: 125, message: '/etc/a3s/guest.conf:2: unknown key "x"' }]);
  });

  it("splits a stream into lines across chunk boundaries", () => {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l));
    s.push("a3s init-st");
    s.push("art 1\na3s agent-start 2\na3s ");
    s.push("poweroff 3\n");
    assert.deepEqual(lines, ["a3s init-start 1", "a3s agent-start 2", "a3s poweroff 3"]);
  });
});

describe("QEMU command line", () => {
  const spec: VmSpec = {
    kernelPath: "/k/vmlinuz",
    initrd: "/w/initrd.img",
    cmdline: "console=ttyS0",
    accel: "tcg",
    cpus: 2,
    memoryMiB: 256,
    transport: "9p",
    shares: [
      { tag: "workspace", hostPath: "/home/me/my,project", readOnly: false },
      { tag: "skills", hostPath: "/skills", readOnly: true },
    ],
    sockets: { stdout: "/w/out.sock", stderr: "/w/err.sock", control: "/w/ctl.sock", changes: "/w/chg.sock" },
    consoleLog: "/w/console.log",
  };

  it("uses microvm with virtio-mmio devices, three named virtio-serial ports (throttled, never a lossy virtconsole) and 9p shares (read-only where asked)", () => {
    const a = qemuArgs(spec).join(" ");
    assert.match(a, /^-M microvm,pit=off,pic=off -accel tcg -smp 2 -m 256M -nodefaults/);
    assert.match(
      a,
      /-device virtio-serial-device,max_ports=5 -chardev socket,id=out,path=\/w\/out\.sock -device virtserialport,chardev=out,name=a3s\.stdout,nr=1 -chardev socket,id=err,path=\/w\/err\.sock -device virtserialport,chardev=err,name=a3s\.stderr,nr=2 -chardev socket,id=ctl,path=\/w\/ctl\.sock -device virtserialport,chardev=ctl,name=a3s\.control,nr=3 -chardev socket,id=chg,path=\/w\/chg\.sock -device virtserialport,chardev=chg,name=a3s\.changes,nr=4 /,
    );
    assert.doesNotMatch(a, /virtconsole/);
    assert.match(a, /-fsdev local,id=fs0,path=\/home\/me\/my,,project,security_model=none -device virtio-9p-device,fsdev=fs0,mount_tag=workspace/);
    assert.match(a, /-fsdev local,id=fs1,path=\/skills,security_model=none,readonly=on/);
    assert.doesNotMatch(a, /-pci|virtio-blk/);
  });

  it("adds a read-only virtio block device for a disk image, and shared memory for virtio-fs", () => {
    const a = qemuArgs({
      ...spec,
      accel: "kvm",
      disk: "/img/root.erofs",
      transport: "virtiofs",
      shares: [{ tag: "workspace", hostPath: "/w", readOnly: false, socket: "/w/ws.sock" }],
    }).join(" ");
    assert.match(a, /-M microvm,pit=off,pic=off,memory-backend=mem -accel kvm -cpu host/);
    assert.match(a, /-drive id=root,file=\/img\/root\.erofs,format=raw,if=none,readonly=on -device virtio-blk-device,drive=root/);
    assert.match(a, /-object memory-backend-memfd,id=mem,size=256M,share=on/);
    assert.match(a, /-chardev socket,id=vfs0,path=\/w\/ws\.sock -device vhost-user-fs-device,chardev=vfs0,tag=workspace/);
  });

  it("puts guest RAM in a file QEMU makes in --memory-dir, shared, aligned to 2 MiB on a tmpfs and to the page size on a hugetlbfs", () => {
    const virtiofs = { ...spec, transport: "virtiofs" as const, shares: [{ tag: "workspace", hostPath: "/w", readOnly: false, socket: "/w/ws.sock" }] };
    const a = qemuArgs({ ...virtiofs, memoryDir: { path: "/run/a3s-ram", hugetlbfs: false } }).join(" ");
    assert.match(a, /^-M microvm,pit=off,pic=off,memory-backend=mem /);
    assert.match(a, /-object memory-backend-file,id=mem,size=256M,mem-path=\/run\/a3s-ram,share=on,align=2M( |$)/);
    assert.doesNotMatch(a, /memfd/, "instead of the memfd virtio-fs would get");
    const h = qemuArgs({ ...virtiofs, memoryDir: { path: "/dev/hugepages", hugetlbfs: true } }).join(" ");
    assert.match(h, /-object memory-backend-file,id=mem,size=256M,mem-path=\/dev\/hugepages,share=on( |$)/);
    const plain = qemuArgs({ ...spec, memoryDir: { path: "/run/a3s-ram", hugetlbfs: false } }).join(" ");
    assert.match(plain, /^-M microvm,pit=off,pic=off,memory-backend=mem .* -object memory-backend-file,id=mem,size=256M,mem-path=\/run\/a3s-ram,share=on,align=2M/, "without shares too");
  });

  it("accepts only a directory on a tmpfs or a hugetlbfs, with room for the guest's RAM", async () => {
    await assert.rejects(checkGuestMemoryDir("/proc", 64), (e) => isA3sError(e, "EUSAGE") && /not on a tmpfs or a hugetlbfs .*written to disk/.test(e.message));
    await assert.rejects(checkGuestMemoryDir(join(tempDir(), "missing"), 64), (e) => isA3sError(e, "EUSAGE") && /not a directory/.test(e.message));
    const file = join(tempDir(), "file");
    writeFileSync(file, "");
    await assert.rejects(checkGuestMemoryDir(file, 64), (e) => isA3sError(e, "EUSAGE") && /not a directory/.test(e.message));
    const shm = statfsSync("/dev/shm");
    assert.equal(shm.type, 0x01021994, "/dev/shm is a tmpfs here");
    assert.deepEqual(await checkGuestMemoryDir("/dev/shm", 64), { path: "/dev/shm", hugetlbfs: false });
    const tooMuch = Math.floor((shm.bavail * shm.bsize) / 2 ** 20) + 1;
    await assert.rejects(checkGuestMemoryDir("/dev/shm", tooMuch), (e) => isA3sError(e, "EUSAGE") && /MiB free, and the guest's RAM takes/.test(e.message));
  });

  it("names each channel's device node on the kernel command line as the QEMU command numbers its port", async () => {
    // The serial device is the second virtio device (after virtio-rng): the guest calls it virtio1.
    const devices = qemuArgs(spec).filter((a) => a.startsWith("virtio-") || a.startsWith("virtserialport,"));
    assert.deepEqual(devices.slice(0, 2), ["virtio-rng-device", "virtio-serial-device,max_ports=5"]);
    const line = await kernelCommandLine("kvm", { job: true, channelDevices: true });
    for (const [name, nr] of [["stdout", 1], ["stderr", 2], ["control", 3]] as const) {
      assert.ok(devices.includes(`virtserialport,chardev=${{ stdout: "out", stderr: "err", control: "ctl" }[name]},name=a3s.${name},nr=${nr}`));
      assert.match(line, new RegExp(`(^| )a3s\\.${name}=/dev/vport1p${nr}( |$)`));
    }
    assert.doesNotMatch(await kernelCommandLine("kvm", { job: true }), /vport/, "without the VM's devices, init finds its ports by name");
  });

  it("adds the change-set port only to a machine given its socket (an overlay-mode run, a snapshot), with room for no more ports", () => {
    const { changes, ...live } = spec.sockets;
    void changes;
    const a = qemuArgs({ ...spec, sockets: live }).join(" ");
    assert.match(a, /-device virtio-serial-device,max_ports=4 /);
    assert.match(a, /name=a3s\.control,nr=3/);
    assert.doesNotMatch(a, /a3s\.changes|chg/);
    assert.match(qemuArgs(spec).join(" "), /max_ports=5 .*name=a3s\.changes,nr=4/);
  });

  it("tells a microVM kernel built with the lapic-timer patch its APIC timer period under TCG only", async () => {
    // QEMU's APIC counts at 1 GHz: 1e9 / HZ ticks per jiffy (the kernel measured 4000247 at HZ=250).
    assert.equal(lapicTimerPeriod({ patches: [LAPIC_TIMER_PERIOD_PATCH], hz: 250 }), 4_000_000);
    assert.equal(lapicTimerPeriod({ patches: [LAPIC_TIMER_PERIOD_PATCH], hz: 1000 }), 1_000_000);
    assert.equal(lapicTimerPeriod({ patches: [], hz: 250 }), undefined, "a kernel without the patch calibrates itself");
    assert.equal(lapicTimerPeriod({ hz: 250 }), undefined, "a kernel built before patches were recorded");
    assert.equal(lapicTimerPeriod({ patches: [LAPIC_TIMER_PERIOD_PATCH] }), undefined, "HZ unknown");
    // Not an a3s.* key: those are init's, and init refuses one it does not know (docs/guest-protocol.md §4).
    assert.match(await kernelCommandLine("tcg", { lapicTimerPeriod: 4_000_000 }), /(^| )a3s_lapic_timer_period=4000000( |$)/);
    assert.doesNotMatch(LAPIC_TIMER_PERIOD_PARAM, /^a3s\./);
    assert.doesNotMatch(await kernelCommandLine("kvm", { lapicTimerPeriod: 4_000_000 }), /lapic_timer_period/, "KVM's guest uses the TSC-deadline timer");
    assert.doesNotMatch(await kernelCommandLine("tcg"), /lapic_timer_period/);
  });

  it("turns off Debian's kernel's write protection, and with it its W+X page-table walk, under TCG only", async () => {
    const debian = { kernelOrigin: "debian:linux-image-6.1.0-57-amd64=6.1.192-3" };
    assert.match(await kernelCommandLine("tcg", debian), /(^| )rodata=off( |$)/);
    assert.doesNotMatch(await kernelCommandLine("kvm", debian), /rodata/, "under KVM the walk is cheap and the protection stays");
    assert.doesNotMatch(await kernelCommandLine("tcg", { kernelOrigin: "a3s-microvm:6.12.117-1~deb12u1+a8e2fd1d" }), /rodata/, "the microVM kernel has no DEBUG_WX");
    assert.doesNotMatch(await kernelCommandLine("tcg", { kernelOrigin: "file:/boot/vmlinux" }), /rodata/, "a user's kernel is left as built");
  });

  it("skips Debian's kernel's self-tests outside the crypto manager and leaves its tracefs unpopulated, on Debian's kernel only", async () => {
    const debian = { kernelOrigin: "debian:linux-image-6.1.0-57-amd64=6.1.192-3" };
    const blacklists = [
      { param: "initcall_blacklist=crypto_kdf108_init,blake2s_mod_init", microvm: "is built without self-tests", user: "may run in FIPS mode" },
      { param: "initcall_blacklist=tracer_init_tracefs,trace_eval_init", microvm: "is built without tracing", user: "is left as built" },
    ];
    for (const { param, microvm, user } of blacklists) {
      const once = new RegExp(`(^| )${param}( |$)`);
      for (const accel of ["tcg", "kvm"] as const) assert.match(await kernelCommandLine(accel, debian), once);
      assert.doesNotMatch(await kernelCommandLine("tcg", { kernelOrigin: "a3s-microvm:6.12.117-1~deb12u1+a8e2fd1d" }), once, `the microVM kernel ${microvm}`);
      assert.doesNotMatch(await kernelCommandLine("tcg", { kernelOrigin: "file:/boot/vmlinux" }), once, `a user's kernel ${user}`);
    }
  });

  it("ships the lapic-timer patch under the name the host looks for, adding the parameter it passes", async () => {
    const patches = await loadKernelPatches();
    const patch = patches.find((p) => p.name === LAPIC_TIMER_PERIOD_PATCH);
    assert.ok(patch, `kernel/patches/${LAPIC_TIMER_PERIOD_PATCH} exists`);
    assert.match(readFileSync(patch.path, "utf8"), new RegExp(`^\\+early_param\\("${LAPIC_TIMER_PERIOD_PARAM.replace(".", "\\.")}", `, "m"));
  });

  it("asks a microVM kernel built with the virtio-fs patch to skip FUSE_FLUSH, under KVM and TCG alike", async () => {
    assert.equal(skipsVirtiofsFlush({ patches: [LAPIC_TIMER_PERIOD_PATCH, VIRTIOFS_NO_FLUSH_PATCH] }), true);
    assert.equal(skipsVirtiofsFlush({ patches: [LAPIC_TIMER_PERIOD_PATCH] }), false, "a kernel built before the patch sends FLUSH");
    assert.equal(skipsVirtiofsFlush({}), false, "a kernel built before patches were recorded");
    const bundle = (patches: string[]): KernelBundle =>
      microvmKernelBundle({ release: "6.12.0-a3s-microvm", origin: "a3s-microvm:test", path: "/k", dir: "/nonexistent", patches, hz: 250 });
    assert.equal(bundle([VIRTIOFS_NO_FLUSH_PATCH]).virtiofsNoFlush, true);
    assert.equal(bundle([]).virtiofsNoFlush, undefined);
    for (const accel of ["kvm", "tcg"] as const) {
      assert.match(await kernelCommandLine(accel, kernelCmdlineOptions(bundle([VIRTIOFS_NO_FLUSH_PATCH]), accel)), /(^| )virtiofs\.no_flush=1( |$)/);
      assert.doesNotMatch(await kernelCommandLine(accel, kernelCmdlineOptions(bundle([]), accel)), /no_flush/);
    }
    const patch = (await loadKernelPatches()).find((p) => p.name === VIRTIOFS_NO_FLUSH_PATCH);
    assert.ok(patch, `kernel/patches/${VIRTIOFS_NO_FLUSH_PATCH} exists`);
    // The built-in module's parameter is "virtiofs." + the module_param's name.
    const name = VIRTIOFS_NO_FLUSH_PARAM.replace(/^virtiofs\./, "").replace(/=.*$/, "");
    assert.match(readFileSync(patch.path, "utf8"), new RegExp(`^\\+module_param\\(${name}, bool, 0444\\);$`, "m"));
  });

  it("boots the microVM kernel on a machine without ACPI under TCG only, when its config and the APIC timer period allow", async () => {
    const kernelIn = (config: string | undefined, patches = [LAPIC_TIMER_PERIOD_PATCH]): KernelBundle => {
      const d = tempDir();
      if (config !== undefined) writeFileSync(join(d, "config"), config);
      return microvmKernelBundle({ release: "6.12.0-a3s-microvm", origin: "a3s-microvm:test", path: join(d, "vmlinux"), dir: d, patches, hz: 250 });
    };
    const both = "CONFIG_X86_MPPARSE=y\nCONFIG_VIRTIO_MMIO=y\nCONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y\n";
    assert.equal(kernelIn(both).acpiOptional, true);
    assert.equal(kernelIn("CONFIG_X86_MPPARSE=y\n# CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES is not set\n").acpiOptional, undefined, "devices only in the DSDT");
    assert.equal(kernelIn("CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y\n").acpiOptional, undefined, "no MP table parser");
    assert.equal(kernelIn(undefined).acpiOptional, undefined, "no config kept beside the kernel");

    const tcg = kernelCmdlineOptions(kernelIn(both), "tcg");
    assert.equal(tcg.noAcpi, true);
    const line = await kernelCommandLine("tcg", tcg);
    for (const p of ["acpi=off", "reboot=t"]) assert.match(line, new RegExp(`(^| )${p}( |$)`), p);
    // KVM, a kernel that measures its own APIC timer, and Debian's kernel keep ACPI.
    assert.equal(kernelCmdlineOptions(kernelIn(both), "kvm").noAcpi, undefined);
    assert.equal(kernelCmdlineOptions(kernelIn(both, []), "tcg").noAcpi, undefined);
    assert.doesNotMatch(await kernelCommandLine("kvm", kernelCmdlineOptions(kernelIn(both), "kvm")), /acpi=off|reboot=t/);
    const debian: KernelBundle = { release: "6.1.0-57-amd64", origin: "debian:linux-image-6.1.0-57-amd64=6.1.192-3", kernelPath: "/k", modules: [] };
    assert.equal(kernelCmdlineOptions(debian, "tcg").noAcpi, undefined);

    assert.match(qemuArgs({ ...spec, noAcpi: true }).join(" "), /^-M microvm,pit=off,pic=off,acpi=off -accel tcg /);
    const shares = { transport: "virtiofs" as const, shares: [{ tag: "workspace", hostPath: "/w", readOnly: false, socket: "/w/ws.sock" }] };
    assert.match(qemuArgs({ ...spec, ...shares, noAcpi: true }).join(" "), /^-M microvm,pit=off,pic=off,acpi=off,memory-backend=mem /);
    assert.doesNotMatch(qemuArgs(spec).join(" "), /acpi/);
  });

  it("ships the initmem patch, which frees the kernel's init sections without the poison fill and asks for no parameter", async () => {
    const patch = (await loadKernelPatches()).find((p) => p.name === "0003-initmem-no-poison.patch");
    assert.ok(patch, "kernel/patches/0003-initmem-no-poison.patch exists");
    const text = readFileSync(patch.path, "utf8");
    assert.match(text, /^-\s+POISON_FREE_INITMEM, what\);$/m, "the poisoned free is what it replaces");
    // A poison above 0xff is free_reserved_area()'s "no fill".
    assert.match(text, /^\+\t+free_reserved_area\(\(void \*\)begin, \(void \*\)end, -1, what\);$/m);
    assert.doesNotMatch(text, /^\+.*(early_param|module_param|__setup)\(/m, "nothing for run to pass");
  });

  it("turns off the crypto self-tests of a packaged kernel on every boot", async () => {
    for (const accel of ["kvm", "tcg"] as const) assert.match(await kernelCommandLine(accel), /(^| )cryptomgr\.notests( |$)/);
  });
});

describe("boot image detection", () => {
  it("tells images apart by their magic numbers, not their names", async () => {
    const dir = tempDir();
    const agent = compileTestBinary();
    const b = new RootfsBuilder().withAgentBinary(agent);
    for (const [fmt, name] of [["cpio", "a.img"], ["cpio", "b.cpio.gz"], ["cpio", "c.cpio.zst"], ["erofs", "d.img"], ["squashfs", "e.img"], ["ext4", "f.img"]] as const) {
      b.withOutput(fmt, join(dir, name));
    }
    await b.build();
    const kinds = await Promise.all(["a.img", "b.cpio.gz", "c.cpio.zst", "d.img", "e.img", "f.img"].map((n) => detectBootImage(join(dir, n))));
    assert.deepEqual(kinds, ["cpio", "cpio", "cpio", "erofs", "squashfs", "ext4"]);
    assert.equal(await detectBootImage(dir), "dir");
    writeFileSync(join(dir, "junk"), "not an image");
    await assert.rejects(detectBootImage(join(dir, "junk")), (e) => isA3sError(e, "EIMAGE"));
  });
});

describe("kernel modules", () => {
  it("orders a dependency closure, skipping built-ins and refusing a missing dependency", () => {
    const info = (name: string, ...depends: string[]) => [name, { name, depends }] as const;
    const available = new Map([info("9p", "9pnet", "netfs"), info("9pnet"), info("netfs"), info("9pnet_virtio", "9pnet", "virtio"), info("virtio", "virtio_ring")]);
    assert.deepEqual(moduleLoadOrder(["9pnet_virtio", "9p", "absent"], available, new Set(["virtio_ring"])), ["9pnet", "virtio", "9pnet_virtio", "netfs", "9p"]);
    assert.throws(() => moduleLoadOrder(["virtio"], available, new Set()), (e) => isA3sError(e, "EMODULE") && /needs virtio_ring/.test(e.message));
  });

  it("reads name and depends from every module of the Debian kernel as kmod's modinfo does", async () => {
    const bundle = await debianKernel({ offline: true });
    const modinfo = findExecutable("modinfo");
    assert.ok(modinfo, "modinfo (Debian package kmod) is installed");
    assert.ok(bundle.modules.length > 10, "the cached Debian kernel has its modules");
    for (const m of bundle.modules) {
      const info = parseModinfo(readFileSync(m.path), m.path);
      const field = (f: string): string => execFileSync(modinfo, ["-F", f, m.path], { encoding: "utf8" }).trim();
      assert.equal(info.name, field("name"), m.path);
      assert.deepEqual([...info.depends], field("depends").split(",").filter(Boolean), m.path);
    }
  });

  it("picks a feature's modules with their dependencies in load order", async () => {
    const bundle = await debianKernel({ offline: true });
    const picked = modulesFor(bundle, ["9pnet_virtio", "9p"]).map((m) => m.name);
    const position = (n: string) => picked.indexOf(n);
    assert.ok(position("virtio_ring") < position("virtio") && position("virtio") < position("9pnet_virtio"));
    assert.ok(position("9pnet") < position("9p") && position("netfs") < position("9p"));
    assert.equal(position("ext4"), -1);
  });

  it("packs only the modules a run's job can use: none for shares it does not have, overlay only in overlay mode", async () => {
    const bundle = await debianKernel({ offline: true });
    const dir = tempDir();
    const image = join(dir, "root.cpio.gz");
    await new RootfsBuilder().withAgentBinary(compileTestBinary()).withOutput("cpio", image).build();
    const names = async (jobs?: { shares: boolean; overlay: boolean }, transport: "9p" | "virtiofs" = "9p") => {
      const work = tempDir();
      return (await prepareBootMedia({ kind: "cpio", image, kernel: bundle, transport, ...(jobs ? { jobs } : {}), workDir: work })).modules.map((m) => m.name);
    };
    const bare = await names({ shares: false, overlay: false });
    assert.ok(bare.includes("virtio_mmio") && bare.includes("virtio_console"), bare.join(" "));
    for (const m of ["9p", "9pnet", "fscache", "netfs", "virtiofs", "fuse", "overlay"]) assert.ok(!bare.includes(m), `${m} in ${bare.join(" ")}`);
    const shared = await names({ shares: true, overlay: false });
    assert.ok(shared.includes("9p") && !shared.includes("overlay"), shared.join(" "));
    const overVirtiofs = await names({ shares: true, overlay: true }, "virtiofs");
    assert.ok(overVirtiofs.includes("virtiofs") && overVirtiofs.includes("overlay") && !overVirtiofs.includes("9p"), overVirtiofs.join(" "));
    assert.deepEqual(await names(), await names({ shares: true, overlay: true }), "a caller that cannot know (a snapshot) gets every job's modules");
  });

  it("packs Debian's modules without their signatures, which the kernel then has no keys for", async () => {
    const bundle = await debianKernel({ offline: true });
    const modinfo = findExecutable("modinfo");
    assert.ok(modinfo, "modinfo (Debian package kmod) is installed");
    const signed = bundle.modules.find((m) => m.name === "virtio_mmio");
    assert.ok(signed);
    assert.match(execFileSync(modinfo, ["-F", "sig_id", signed.path], { encoding: "utf8" }), /PKCS#7/, "Debian signs its modules");
    const original = readFileSync(signed.path);
    const stripped = withoutModuleSignature(original, signed.path);
    assert.ok(stripped.length < original.length - 256, "the signature is gone");
    assert.equal(parseModinfo(stripped, signed.path).name, "virtio_mmio", "what is left is the module");
    const dir = tempDir();
    writeFileSync(join(dir, "virtio_mmio.ko"), stripped);
    assert.equal(execFileSync(modinfo, ["-F", "sig_id", join(dir, "virtio_mmio.ko")], { encoding: "utf8" }).trim(), "", "kmod sees no signature");
    assert.equal(withoutModuleSignature(stripped, "x"), stripped, "an unsigned module is left as it is");
    const bad = Buffer.concat([stripped, Buffer.from([0, 0, 2, 0, 0, 0, 0, 0, 0x7f, 0, 0, 0]), Buffer.from("~Module signature appended~\n")]);
    assert.throws(() => withoutModuleSignature(bad, "/k/bad.ko"), (e) => isA3sError(e, "EMODULE") && /\/k\/bad\.ko: its module signature is malformed/.test(e.message));

    const image = join(dir, "root.cpio.gz");
    await new RootfsBuilder().withAgentBinary(compileTestBinary()).withOutput("cpio", image).build();
    const initrd = readFileSync((await prepareBootMedia({ kind: "cpio", image, kernel: bundle, transport: "9p", jobs: { shares: false, overlay: false }, workDir: tempDir() })).initrd);
    assert.ok(initrd.includes(stripped.subarray(stripped.length - 4096)) && !initrd.includes(Buffer.from("~Module signature appended~")), "the boot media carry the unsigned modules");

    assert.match(await kernelCommandLine("tcg", { kernelOrigin: bundle.origin }), /(^| )initcall_blacklist=load_system_certificate_list( |$)/);
    assert.doesNotMatch(await kernelCommandLine("tcg", { kernelOrigin: "file:/my/vmlinux" }), /initcall_blacklist/, "a kernel of the user's own keeps its keys");
    assert.doesNotMatch(await kernelCommandLine("tcg", { kernelOrigin: "a3s-microvm:6.12" }), /initcall_blacklist/);
  });

  it("refuses a file that is not a kernel module", () => {
    assert.throws(() => parseModinfo(readFileSync(compileTestBinary()), "agent"), (e) => isA3sError(e, "EMODULE"));
  });
});

describe("the host's TSC rate", () => {
  it("is bogomips / 2 MHz where the TSC has a constant rate, and unknown otherwise ('cpu MHz' is not it)", () => {
    const cpuinfo = "processor\t: 0\ncpu MHz\t\t: 1200.000\nflags\t\t: fpu tsc constant_tsc nonstop_tsc\nbogomips\t: 5199.99\n";
    assert.equal(tscKhzFromCpuinfo(cpuinfo), 2599995);
    assert.equal(tscKhzFromCpuinfo(cpuinfo.replace(" constant_tsc", "")), undefined);
    assert.equal(tscKhzFromCpuinfo("cpu MHz\t\t: 2600.000\n"), undefined);
  });

  it("agrees with the kernel's own TSC calibration on this host, where dmesg can be read", (t) => {
    const dmesg = spawnSync("dmesg", [], { encoding: "utf8" });
    // The refined calibration, when the kernel logged one, is its last word on the rate.
    const detected = [...(dmesg.stdout ?? "").matchAll(/tsc: (?:Refined TSC clocksource calibration: |Detected )([\d.]+) MHz/g)].at(-1);
    const ours = tscKhzFromCpuinfo(readFileSync("/proc/cpuinfo", "utf8"));
    if (!detected || ours === undefined) {
      t.skip(detected ? "this CPU has no constant_tsc" : "the kernel log cannot be read here");
      return;
    }
    const kernelKhz = Number(detected[1]) * 1000;
    assert.ok(Math.abs(ours - kernelKhz) <= 10, `bogomips says ${ours} kHz, the kernel ${kernelKhz} kHz`);
  });
});
