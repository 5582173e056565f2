import type { Accelerator } from "./accelerator.js";

/**
 * Whether a guest boots on a machine without ACPI (microvm acpi=off, as
 * Firecracker's machine is): under TCG, with a kernel that can (see
 * KernelBundle.acpiOptional) and whose APIC timer period the host gives
 * (lapic-timer.ts). Without ACPI the kernel would measure that period
 * against a PIT the machine does not have ("APIC timer disabled due to
 * verification failure"), and nothing would tell Debian's kernel where the
 * virtio devices are.
 *
 * Why: ACPI costs a TCG boot of the microVM kernel about 60 ms before init
 * starts. initcall_debug, two boots: acpi_init (loading and running the
 * DSDT's AML through ACPICA, code translated for this one use) 44-50 ms,
 * the ACPI GED driver 8-9 ms, PnP over ACPI 3 ms; powering off through
 * ACPI's sleep registers added ~20 ms more at the end. Without it the
 * kernel reads the CPUs from the firmware's MP table and the virtio-mmio
 * devices from the command line, where QEMU puts them with acpi=off.
 * Under KVM the AML runs natively, and ACPI stays (untested there
 * without it). The command line says the same (kernel-cmdline.ts), and
 * init ends the VM by a reset where the kernel has no ACPI to power off
 * with.
 */
export function bootsWithoutAcpi(accel: Accelerator, kernel: { readonly acpiOptional?: boolean; readonly lapicTimerPeriod?: number }): boolean {
  return accel === "tcg" && kernel.acpiOptional === true && kernel.lapicTimerPeriod !== undefined;
}
