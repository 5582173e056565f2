/**
 * The local APIC timer period the host tells the microVM kernel under TCG
 * (kernel/patches/0001-lapic-timer-period-param.patch).
 *
 * Without it the kernel measures the period at every boot by polling the
 * TSC for HZ/10 jiffies: about 100 ms of a TCG boot, the single largest
 * step of the microVM kernel's. Under TCG nothing else can tell the guest
 * the rate (QEMU refuses the TSC-deadline timer there, its CPUID has no
 * leaf 0x15, and no hypervisor signature leads Linux to a platform value),
 * but the host knows it exactly: QEMU's emulated APIC counts its timer in
 * nanoseconds of QEMU's virtual clock, a 1 GHz bus clock, so one jiffy is
 * 1e9 / HZ ticks. The kernel measured 4000247 for HZ=250 with `apic=debug`
 * ("host bus clock speed is 1000.0247 MHz"), the same rate within its
 * polling's error. Under KVM with -cpu host the guest uses the
 * TSC-deadline timer and calibrates nothing, so the parameter is for TCG
 * only.
 */

/** The file of the kernel patch that adds the parameter: a kernel built with it accepts it. */
export const LAPIC_TIMER_PERIOD_PATCH = "0001-lapic-timer-period-param.patch";

/** The rate QEMU's emulated local APIC timer counts at, before its divider: one tick per ns of the virtual clock. */
export const QEMU_APIC_BUS_HZ = 1_000_000_000;

/** The parameter's name, as the patch's early_param spells it. */
export const LAPIC_TIMER_PERIOD_PARAM = "a3s_lapic_timer_period";

/**
 * The period (bus clock ticks per jiffy) for a built microVM kernel, or
 * undefined when it lacks the patch (built by an older a3s-rootfs) or its
 * HZ is unknown: that kernel calibrates as usual.
 */
export function lapicTimerPeriod(kernel: { readonly patches?: readonly string[]; readonly hz?: number }): number | undefined {
  if (!kernel.patches?.includes(LAPIC_TIMER_PERIOD_PATCH)) return undefined;
  if (!kernel.hz || !Number.isInteger(kernel.hz) || kernel.hz <= 0) return undefined;
  return Math.round(QEMU_APIC_BUS_HZ / kernel.hz);
}
