/**
 * The `-M` value for every guest this project starts.
 *
 * pit=off,pic=off: with the PVH entry no firmware programs the legacy 8259
 * PIC, so its vector base is still 0 when the kernel starts. A tick of the
 * i8254 PIT that lands before the kernel remaps the PIC arrives as vector 0,
 * which the CPU takes as a divide error (#DE): the kernel dies in
 * start_kernel ("Attempted to kill the idle task"). Whether a tick lands in
 * that window is timing, so boots failed at random, more often on a busy
 * host. The guest needs neither device: its clock events come from the LAPIC
 * timer, as on Firecracker, whose machine has no PIC or PIT at all.
 */
export function microvmMachine(extra: readonly string[] = []): string {
  return ["microvm", "pit=off", "pic=off", ...extra].join(",");
}
