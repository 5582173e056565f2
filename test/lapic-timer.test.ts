// The microVM kernel's local APIC timer period, passed by the host under
// TCG (kernel/patches/0001-lapic-timer-period-param.patch,
// src/boot/lapic-timer.ts, docs/boot.md "Our own patches"): the period the
// host passes must be the one the kernel would measure, the kernel must use
// it instead of measuring, and its timer must then fire when asked (a
// period too large would make every timer late by the same factor; too
// small, early, which the kernel corrects by firing again). Two real boots
// with `apic=debug`, whose messages the console shows with loglevel=7.
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { chooseAccelerator } from "../src/boot/accelerator.js";
import { findMicrovmKernel, microvmKernelBundle } from "../src/boot/microvm-kernel-cache.js";
import { RootfsBuilder } from "../src/index.js";
import { cacheRoot } from "../src/util/cache-dir.js";
import { buildProbeImage } from "./helpers/boot.js";
import { bootOwnQemu } from "./helpers/own-qemu.js";
import { compileTestBinary } from "./helpers/static-binary.js";
import { tempDir } from "./helpers/temp-dir.js";

const built = await findMicrovmKernel();
const period = built ? microvmKernelBundle(built).lapicTimerPeriod : undefined;
const accel = built ? (await chooseAccelerator("auto", "qemu-system-x86_64", built.path, cacheRoot())).accel : undefined;
const skip = !built
  ? "no microVM kernel is built for these fragments (run: a3s-rootfs kernel build)"
  : period === undefined
    ? "the built microVM kernel lacks the lapic-timer patch"
    : accel !== "tcg"
      ? "the period is passed under TCG only (KVM's guest uses the TSC-deadline timer)"
      : false;

const DEBUG = "apic=debug loglevel=7";

/**
 * The agent: 200 sleeps of 2 ms, each timed on CLOCK_MONOTONIC (the TSC:
 * right whatever the APIC timer's period); prints the median in µs. A
 * short sleep is the guest's next timer event, so its end is the APIC
 * timer's interrupt; a one-second sleep is not, other timers' interrupts
 * end it on time even with a wrong period (seen: 1003 ms with the period
 * doubled). This kernel ends a sleep at a tick (it rounds 2 ms up to one
 * 4 ms jiffy at HZ=250): measured, 4.0 ms with the right period and 8.0 ms
 * with it doubled.
 */
const SLEEPER = `#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static long long us(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000LL + t.tv_nsec / 1000; }
static int cmp(const void *a, const void *b) { long long x = *(const long long *)a, y = *(const long long *)b; return x < y ? -1 : x > y; }
int main(void) {
  static long long took[200];
  struct timespec two_ms = { 0, 2000000 };
  for (int i = 0; i < 200; i++) {
    long long start = us();
    if (nanosleep(&two_ms, NULL) != 0) return 1;
    took[i] = us() - start;
  }
  qsort(took, 200, sizeof took[0], cmp);
  printf("sleep_us %lld\\n", took[100]);
  return 0;
}
`;

describe("the APIC timer period the host passes to the microVM kernel", { skip }, () => {
  it("is what the kernel measures when it is not passed", async () => {
    const dir = tempDir();
    const image = await buildProbeImage(dir, "cpio", "rootfs.cpio");
    // The kernel's measurement polls for 100 ms against the TSC, and under
    // TCG each end of it is two reads (the TSC, the APIC's count) that the
    // host may run milliseconds apart: a vCPU thread preempted between them
    // (other tests boot VMs on the same two cores) skews that boot's result
    // by the preemption's share of the 100 ms. Seen on this 2-core host: 0.00 %
    // off in 4 quiet boots; with three CPU hogs, 3.2-3.7 % off in 3 of 8 boots;
    // with QEMU at real-time priority among the same hogs, 0.00 % in 7 of 8
    // and 9.4 % in one, so the disturbance cannot be kept out of the boot.
    // The check is therefore a statistic over a fixed sample, not a retry:
    // five boots, every one made and kept, and the one least disturbed must
    // be within 2 %. A wrong period is off by the same factor in all five.
    const measured: number[] = [];
    for (let boot = 0; boot < 5; boot++) {
      // Each boot in a directory of its own: a run's sockets live there.
      const r = await bootOwnQemu({ image, dir: tempDir(), args: [], kernel: "microvm", append: DEBUG, lapicTimerPeriod: false });
      assert.doesNotMatch(r.console, /lapic_timer_period/);
      const m = Number(/calibration result: (\d+)/.exec(r.console)?.[1]);
      assert.ok(m > 0, `the kernel printed its calibration:\n${r.console.slice(-3000)}`);
      measured.push(m);
    }
    const leastDisturbed = Math.min(...measured.map((m) => Math.abs(m - period!) / period!));
    assert.ok(leastDisturbed < 0.02, `the kernel measured ${measured.join(", ")}, the host passes ${period}`);
  });

  it("is used instead of measuring, and the timer fires when it is asked to", async () => {
    const dir = tempDir();
    const image = join(dir, "rootfs.cpio");
    await new RootfsBuilder().withAgentBinary(compileTestBinary({ source: SLEEPER })).withOutput("cpio", image).build();
    const r = await bootOwnQemu({ image, dir, args: [], kernel: "microvm", append: DEBUG });
    assert.match(r.console, new RegExp(`lapic timer already calibrated ${period}\\b`), r.console.slice(-3000));
    assert.doesNotMatch(r.console, /Calibrating APIC timer/);
    // A period too large by k makes every timer k times late: a 2 ms sleep
    // then takes 2 jiffies or more where it takes 1 (one too small makes
    // the timer fire early, and the kernel sets it again).
    const jiffyUs = 1e6 / built!.hz!;
    const sleptUs = Number(/^sleep_us (\d+)$/m.exec(r.stdout)?.[1]);
    assert.ok(sleptUs >= 2000 && sleptUs < 1.5 * jiffyUs, `a 2 ms sleep took ${sleptUs} µs (median of 200; a jiffy is ${jiffyUs} µs; stdout: ${JSON.stringify(r.stdout)})`);
  });
});
