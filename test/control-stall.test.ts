// A host that stops reading the control channel for a while must neither
// stall the guest's PID 1 nor lose the agent's exit status
// (docs/guest-protocol.md §7). Real boots: once the agent has started, the
// host stops reading the control socket for some seconds and floods the
// guest with "signal 28" commands (SIGWINCH, which the probe ignores), each
// of which makes init report a signal line.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ControlEvent } from "../src/boot/control-lines.js";
import { buildProbeImage } from "./helpers/boot.js";
import { bootOwnQemu, type OwnQemuRun } from "./helpers/own-qemu.js";
import { tempDir } from "./helpers/temp-dir.js";

async function bootWithStalledHost(opts: {
  /** virtconsole: QEMU drops what the host socket cannot take; virtserialport: QEMU throttles the guest. */
  port: "virtconsole" | "virtserialport";
  /** How long the host reads nothing from the control socket once the agent has started. */
  stallMs: number;
  /** "signal 28" commands written to the guest then. */
  flood: number;
  args: string[];
}): Promise<OwnQemuRun> {
  const dir = tempDir();
  // The only console port is hvc0; the serial port keeps its default name.
  const image = await buildProbeImage(dir, "cpio", "rootfs.cpio", (b) =>
    opts.port === "virtconsole" ? b.withFile("/etc/a3s/guest.conf.d/10-control.conf", "a3s-guest-config 1\ncontrol=/dev/hvc0\n") : b,
  );
  return bootOwnQemu({
    image,
    dir,
    args: opts.args,
    devices: { ctl: opts.port },
    onControlLine: (socket, ev) => {
      if (ev.kind !== "agent-start") return;
      socket.pause();
      socket.write("signal 28\n".repeat(opts.flood));
      setTimeout(() => socket.resume(), opts.stallMs);
    },
  });
}

function exitStatus(events: ControlEvent[]): number | string {
  const end = events.find((e) => e.kind === "agent-exit" || e.kind === "error");
  return end?.kind === "agent-exit" ? end.status : `no agent-exit line (${end?.kind ?? "nothing"})`;
}

function orphansReaped(stdout: string): number | undefined {
  const report = JSON.parse(stdout.trim().split("\n")[0] ?? "{}") as { orphans?: { reaped: number } };
  return report.orphans?.reaped;
}

describe("a host that stops reading the control channel", () => {
  it("virtconsole (QEMU drops what the host does not take): the exit status still arrives", async () => {
    // The host's socket holds a few hundred writes; the flood asks for
    // thousands of signal lines, of which init writes at most 64. (An init
    // that wrote them all lost its agent-exit line here.)
    const r = await bootWithStalledHost({ port: "virtconsole", stallMs: 8000, flood: 2000, args: ["--delay", "5000", "--exit", "7"] });
    assert.equal(exitStatus(r.events), 7);
    const signals = r.events.filter((e) => e.kind === "signal").length;
    assert.ok(signals > 0 && signals <= 64, `${signals} signal lines reached the host`);
    assert.ok(r.events.some((e) => e.kind === "poweroff"));
  });

  it("virtserialport (QEMU throttles the guest): init keeps reaping orphans, and the exit status arrives when the host reads again", async () => {
    // The orphans come after the flood; the probe waits at most 5 s for
    // init to reap them, less than the host's stall. (An init that wrote
    // control lines blocking reaped none of them here.)
    const r = await bootWithStalledHost({
      port: "virtserialport",
      stallMs: 9000,
      flood: 2000,
      args: ["--delay", "2500", "--spawn-orphans", "3", "--exit", "3"],
    });
    assert.equal(orphansReaped(r.stdout), 3, r.stdout);
    assert.equal(exitStatus(r.events), 3);
  });
});
