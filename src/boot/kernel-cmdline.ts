import { A3sError } from "../errors.js";
import { kernelCmdlineArg, parseUserSpec } from "../layout/guest-config.js";
import { GUEST_PORT_DEVICES } from "./qemu-command.js";
import type { Accelerator } from "./accelerator.js";
import { hostTscKhz } from "./host-tsc.js";
import { isDebianKernel } from "./kernel-bundle.js";
import { LAPIC_TIMER_PERIOD_PARAM } from "./lapic-timer.js";
import { packsUnsignedModules, SKIP_MODULE_KEYS } from "./module-signature.js";
import { VIRTIOFS_NO_FLUSH_PARAM } from "./virtiofs-flush.js";

/**
 * The self-tests Debian's kernel runs at boot outside the crypto manager,
 * which cryptomgr.notests therefore does not reach, skipped the way
 * SKIP_MODULE_KEYS skips the keys: by their initcalls' names.
 * - crypto_kdf108_init (crypto/kdf_sp800108.c) only checks the SP800-108
 *   key derivation against a known answer; the KDF itself is a library
 *   its users call, and stays usable.
 * - blake2s_mod_init: two initcalls carry the name. lib/crypto/blake2s.c's
 *   only runs BLAKE2s's self-test; arch/x86/crypto/blake2s-glue.c's turns
 *   on the SSSE3/AVX-512 code where the CPU has it (TCG's qemu64 has
 *   neither), so under KVM the guest's BLAKE2s (random.c's entropy pool)
 *   runs the generic C code instead, for the few kilobytes it hashes.
 * Measured with initcall_debug on Debian's 6.1 kernel under TCG, three
 * boots: 31-46 ms in crypto_kdf108_init and 14-20 ms in the self-test,
 * all of it computation in the initcall itself: a self-test waits for nothing.
 * Only for Debian's kernel, which is never booted with fips=1 here: in FIPS
 * mode the tests must run, and a user's kernel is left as built. A longer
 * initcall in the same boots, cubictcp_register (~52 ms), was not taken:
 * skipped, its cost moved to the next initcall (the parse of the kernel's
 * BTF, done once for whoever first registers BPF functions), and cubic
 * would be missing.
 */
export const DEBIAN_SELF_TESTS_OFF = "initcall_blacklist=crypto_kdf108_init,blake2s_mod_init";

/**
 * Debian's kernel's tracing file system, never populated: no guest of ours
 * traces its kernel. Two initcalls of kernel/trace/trace.c (6.1) queue the
 * work on a workqueue of their own, where it runs on the boot's one vCPU
 * and is charged to whichever initcalls are running then: by instruction
 * count (below), init_blk_tracer, dquot_init, ksm_init, kcompactd_init and
 * blkcg_init, 24.5 of the initcalls' 94 units; on the wall clock under TCG
 * with initcall_debug, init_kprobe_trace (~100 ms), which waits for the
 * files to exist (an earlier blacklist of init_kprobe_trace only moved
 * that wait):
 * - tracer_init_tracefs creates tracefs's files, among them a directory of
 *   files for each of the kernel's trace events (event_trace_init), and
 *   registers the module notifiers that add each module's events and enum
 *   maps as it loads (init's virtio modules);
 * - trace_eval_init rewrites every event's format string, putting the
 *   numbers for the enum names it prints; the strings are read only through
 *   tracefs's `format` files.
 * The kernel's built-in events and all tracepoints stay registered (the
 * ring buffer, ftrace and the kernel's own users of tracepoints are
 * untouched); a module's events are not added.
 * Measured under TCG, scratch cpio, one boot at a time, alternated: with
 * `-icount shift=0,sleep=off` (the guest's own work) init's exec of the
 * agent came 25 of 135 units sooner; on the wall clock, VMM start → agent
 * start paired medians -223, -175 and -249 ms in series of 10, 12 and 10
 * pairs (faster in 6, 7 and 8), init start → agent exec 180-227 against
 * 238-254 ms (medians; by instruction count init's own part grew, 8.3 to
 * 11.4-12.2 units, not explained). Under KVM too, where it was not
 * measured: the guest has no use for the work under any accelerator. Only
 * Debian's kernel: the microVM kernel is built without tracing, and a
 * user's kernel is left as built.
 */
export const DEBIAN_TRACEFS_OFF = "initcall_blacklist=tracer_init_tracefs,trace_eval_init";

/**
 * The kernel command line: kernel and init messages on the serial console,
 * a panic ends the VM at once, and a3s.* parameters (docs/guest-protocol.md
 * §4): `a3s.job=1` for a run of this host, whose job comes on the control
 * channel; overrides of the image's config for other callers.
 */
export async function kernelCommandLine(
  accel: Accelerator,
  opts: {
    user?: string;
    env?: readonly string[];
    args?: readonly string[];
    job?: boolean;
    rootVerity?: string;
    /** The VM is qemuArgs's: name its channel devices for init (see below). */
    channelDevices?: boolean;
    /** The kernel's origin (KernelBundle.origin): Debian's kernel gets its own parameters (module-signature.ts). */
    kernelOrigin?: string;
    /** KernelBundle.lapicTimerPeriod: the kernel accepts its APIC timer period from the host (lapic-timer.ts). */
    lapicTimerPeriod?: number;
    /** KernelBundle.virtiofsNoFlush: the kernel can skip FUSE_FLUSH on the shares (virtiofs-flush.ts). */
    virtiofsNoFlush?: boolean;
    /** The machine has no ACPI (bootsWithoutAcpi, machine-acpi.ts). */
    noAcpi?: boolean;
  } = {},
): Promise<string> {
  // noreplace-smp: a kernel that finds one CPU rewrites every LOCK prefix in
  // its text to a NOP-like prefix, one text_poke each (a page-table switch
  // and a TLB flush apiece). Under TCG each such flush also drops QEMU's
  // translated-code caches: about 100 ms of the microVM kernel's boot, more
  // of Debian's. Keeping the prefixes costs a uniprocessor guest nothing
  // measurable (single-vCPU TCG runs them as plain instructions).
  //
  // cryptomgr.notests (Documentation/admin-guide/kernel-parameters.txt:
  // "Disable crypto self-tests"): Debian's kernel tests every crypto
  // algorithm it registers against known answers as it boots, the
  // crypto_algapi_init initcall: about 185 ms of its boot under TCG
  // (initcall_debug), ~230 ms earlier to /init measured. The tests check
  // the kernel's own code, the same bytes every boot of a packaged kernel;
  // the microVM kernel is built without them
  // (CRYPTO_MANAGER_DISABLE_TESTS, kernel/config/base.config) for the same
  // reason. A kernel booted with fips=1 runs them regardless.
  const parts = ["console=ttyS0", "panic=-1", "quiet", "noreplace-smp", "cryptomgr.notests"];
  // The host packs this kernel's modules unsigned: no keys to load for them.
  if (opts.kernelOrigin !== undefined && packsUnsignedModules(opts.kernelOrigin)) parts.push(SKIP_MODULE_KEYS);
  if (opts.kernelOrigin !== undefined && isDebianKernel(opts.kernelOrigin)) parts.push(DEBIAN_SELF_TESTS_OFF, DEBIAN_TRACEFS_OFF);
  // init waits at the ready point for its job on the control channel (§8)
  if (opts.job) parts.push(kernelCmdlineArg("job", "1"));
  // One synchronous round trip less per close on a share (virtiofs-flush.ts).
  if (opts.virtiofsNoFlush) parts.push(VIRTIOFS_NO_FLUSH_PARAM);
  // The channels' device nodes, as qemuArgs numbers the ports: init opens
  // them as they are, where a port's name would cost it a walk of sysfs
  // (about 10 ms of its start under TCG, docs/guest-protocol.md §6). They
  // override the image's config, which cannot know this VMM's devices.
  if (opts.channelDevices) for (const ch of ["stdout", "stderr", "control"] as const) parts.push(kernelCmdlineArg(ch, GUEST_PORT_DEVICES[ch]));
  if (accel === "tcg") {
    // Under TCG the guest's TSC calibration can fail on a busy host and hang
    // the boot; giving the host's TSC rate (see host-tsc.ts) skips it.
    const khz = await hostTscKhz();
    if (khz) parts.push(`tsc_early_khz=${khz}`);
    // tsc=reliable: TCG's guest TSC is the host's TSC (constant rate, never
    // stopping), but the guest sees a CPU (qemu64) that does not say so, so
    // Linux checks it against a watchdog clock. On QEMU's microvm the only
    // other clock is refined-jiffies, which advances on timer ticks, and
    // ticks arrive late or not at all while the host is busy or the guest
    // calibrates its APIC timer. Seen here: "Marking clocksource 'tsc-early'
    // as unstable because the skew is too large ... over watchdog
    // 'refined-jiffies'", then the guest ran on 4 ms jiffies for the rest of
    // the boot. The watchdog is the less reliable of the two clocks here;
    // tsc=reliable turns it off for the TSC, as Linux itself does on
    // hardware whose CPUID reports a constant, non-stop TSC.
    parts.push("tsc=reliable");
    // The APIC timer's rate, which the kernel would otherwise measure by
    // polling for 100 ms (lapic-timer.ts). TCG only: under KVM the guest
    // has the TSC-deadline timer and calibrates nothing.
    if (opts.lapicTimerPeriod !== undefined) parts.push(`${LAPIC_TIMER_PERIOD_PARAM}=${opts.lapicTimerPeriod}`);
    // rodata=off, Debian's kernel only: it is built with CONFIG_DEBUG_WX,
    // which walks every kernel page table once the kernel has made its
    // text and read-only data read-only ("x86/mm: Checked W+X mappings"),
    // about 110 ms of emulated work under TCG, measured between the two
    // console lines. No parameter turns off the walk alone; rodata=off
    // skips the write protection and with it the walk. Measured, scratch
    // cpio, 8 boots each, alternated in both orders (on this host the
    // second boot of a pair tends to be the faster): kernel start to /init
    // 839 ms median (756-936) against 924 ms (871-1534); VMM start to agent
    // start 1.62 s against 1.68 s. What it gives up: inside the guest, the
    // kernel's own code and constants stay writable to a bug that lets a
    // guest process write kernel memory. The sandbox's boundary is the VM, and
    // under TCG that boundary is QEMU's emulation, which QEMU's security
    // policy does not count as one (docs/boot.md); under KVM the walk
    // costs about a millisecond and the protection stays. The microVM
    // kernel has no DEBUG_WX (kernel/config) and keeps it under TCG too.
    if (opts.kernelOrigin !== undefined && isDebianKernel(opts.kernelOrigin)) parts.push("rodata=off");
  }
  if (opts.noAcpi) {
    // A machine without ACPI (bootsWithoutAcpi): acpi=off keeps the kernel
    // from looking for tables that are not there, which it reports as an
    // error on the console at every boot ("ACPI BIOS Error (bug): A valid
    // RSDP was not found"). reboot=t: init ends such a VM by a reset (it
    // cannot power off), and x86's default reset first tries the keyboard
    // controller, which microvm lacks: ten attempts, each polling its
    // absent status port up to 65,536 times. A triple fault resets at
    // once; QEMU's -no-reboot then exits. A panic (panic=-1) ends the
    // same way.
    parts.push("acpi=off", "reboot=t");
  }
  if (opts.user !== undefined) {
    const u = parseUserSpec(opts.user);
    parts.push(kernelCmdlineArg("user", `${u.uid}:${u.gid}`));
  }
  // The root hash reaches the guest here, beside what else the host decides
  // per boot; the guest opens its root through dm-verity with it.
  if (opts.rootVerity) parts.push(kernelCmdlineArg("rootverity", opts.rootVerity));
  for (const e of opts.env ?? []) parts.push(kernelCmdlineArg("env", e));
  for (const a of opts.args ?? []) parts.push(kernelCmdlineArg("arg", a));
  const line = parts.join(" ");
  // x86's COMMAND_LINE_SIZE: a longer line is cut by the kernel, silently.
  if (line.length > 2047) {
    throw new A3sError("EUSAGE", `the kernel command line would be ${line.length} bytes, over the 2047 the kernel accepts`, {
      hint: "bake long arguments and environment into the image with a3s-rootfs build --agent-args/--env",
    });
  }
  return line;
}
