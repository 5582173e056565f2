import { randomBytes } from "node:crypto";
import { renderGuestJob, type GuestJob } from "../layout/guest-config.js";
import type { ControlEvent } from "./control-lines.js";
import type { GuestChannel } from "./guest-channels.js";

/** Bytes of the host's randomness sent with every job (§8: 16 to 512). */
const JOB_ENTROPY_BYTES = 64;

/** A job without its per-send parts: entropy and the clock are taken when it is sent. */
export type JobRequest = Omit<GuestJob, "entropy" | "clockMs">;

/**
 * The host's half of guest protocol 2 on the control channel
 * (docs/guest-protocol.md §8):
 *
 * - the job: for a machine that boots, as soon as its init has the
 *   control channel open for good (`a3s init-start`, or `a3s root-ready`
 *   when init moves to a disk root), so that the job is there when init
 *   is ready and init waits for no round trip through the host (measured
 *   under TCG: 4 to 10 ms of init's start, bench/results/init-steps.md);
 *   for one restored from a snapshot at once, its init is already
 *   waiting. Its clock and entropy are taken at that moment, so no two
 *   machines share random state, and the clock a booting guest is given
 *   is as old as init's set-up (tens of ms under TCG);
 * - `poweroff`, once every byte of the agent's output that `agent-exit`
 *   counts has arrived, and every byte of the change set that `changes`
 *   counts (overlay mode): until then the guest keeps the VM up, because a
 *   virtio-serial port holds what the host has not read yet, and a VM
 *   that powered off would lose it.
 */
export class GuestConversation {
  /** performance.now() when the job was written, or null. */
  jobSentAt: number | null = null;
  private readonly received = { stdout: 0, stderr: 0, changes: 0 };
  private expected: { stdout: number; stderr: number } | undefined;
  /** Bytes of the change set init said it wrote (overlay mode, docs/guest-protocol.md §8); 0 without one. */
  private changesExpected = 0;
  private poweroffSent = false;

  /**
   * @param sendOn the guest's control line on which a booting machine gets
   *   its job (the default, `ready`, is always safe); a restore calls
   *   sendJob() itself.
   */
  constructor(
    private readonly control: GuestChannel,
    private readonly job: JobRequest,
    private readonly sendOn: "init-start" | "root-ready" | "ready" = "ready",
  ) {}

  /** Writes the job (once). */
  sendJob(): void {
    if (this.jobSentAt !== null) return;
    const text = renderGuestJob({ ...this.job, entropy: randomBytes(JOB_ENTROPY_BYTES), clockMs: Date.now() });
    this.control.write(text);
    this.jobSentAt = performance.now();
  }

  /** A control line from the guest. */
  event(ev: ControlEvent): void {
    if (ev.kind === this.sendOn || ev.kind === "ready") this.sendJob();
    // Sent before agent-exit: the power-off waits for the change set too.
    if (ev.kind === "changes") this.changesExpected = ev.bytes;
    if (ev.kind === "agent-exit" && ev.output) {
      this.expected = ev.output;
      this.maybePowerOff();
    }
  }

  /** Bytes of the agent's output, or of the change set, read from its channel. */
  output(which: "stdout" | "stderr" | "changes", bytes: number): void {
    this.received[which] += bytes;
    this.maybePowerOff();
  }

  private maybePowerOff(): void {
    const e = this.expected;
    if (!e || this.poweroffSent || this.received.stdout < e.stdout || this.received.stderr < e.stderr) return;
    if (this.received.changes < this.changesExpected) return;
    this.poweroffSent = true;
    this.control.write("poweroff\n");
  }
}
