// A VM with fewer virtio console ports than the guest config names: init
// must not wait for ports that cannot come, and the control lines must reach
// the host on the console instead (docs/guest-protocol.md §6). Real boots
// with Debian's kernel (its drivers are modules), where the ports appear only after init loaded
// virtio_console, which is when init may wait for them at all.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildProbeImage } from "./helpers/boot.js";
import { bootOwnQemu, type OwnQemuRun } from "./helpers/own-qemu.js";
import { tempDir } from "./helpers/temp-dir.js";

/** How often init's debug log says it stopped waiting for ports at its one limit for the boot. */
function portWaitLimitsReached(r: OwnQemuRun): number {
  assert.match(r.console, /loaded module/, "init loaded the console driver itself (a3s.debug lines)");
  return [...r.console.matchAll(/channels: stopped waiting for ports at the \d+ ms limit/g)].length;
}

function exitStatus(r: OwnQemuRun): number | undefined {
  const end = r.events.find((e) => e.kind === "agent-exit");
  return end?.kind === "agent-exit" ? end.status : undefined;
}

describe("a VM with fewer channels than the config names", () => {
  it("only stdout: no wait for the stderr and control ports, control lines on the console", async () => {
    const dir = tempDir();
    const image = await buildProbeImage(dir, "cpio", "rootfs.cpio");
    const r = await bootOwnQemu({ image, dir, kernel: "debian", args: ["--exit", "5"], append: "a3s.debug=1", devices: { err: null, ctl: null } });
    assert.match(r.console, /a3s-init: \/dev\/virtio-ports\/a3s\.stderr: .* \(using the console instead\)/);
    assert.match(r.console, /a3s-init: \/dev\/virtio-ports\/a3s\.control: .* \(using the console instead\)/);
    assert.equal(exitStatus(r), 5, r.console);
    assert.equal(JSON.parse(r.stdout.trim()).probe, 1, "stdout still has its own channel");
    // Once every listed port has its name, the other names cannot come:
    // init stops looking then, never at its time limit.
    assert.equal(portWaitLimitsReached(r), 0, r.console);
  });

  it("a virtio-serial device with no port: one bounded wait, not one per channel", async () => {
    const dir = tempDir();
    const image = await buildProbeImage(dir, "cpio", "rootfs.cpio");
    const r = await bootOwnQemu({ image, dir, kernel: "debian", args: ["--exit", "6"], append: "a3s.debug=1", devices: { out: null, err: null, ctl: null, chg: null } });
    assert.equal(exitStatus(r), 6, r.console);
    assert.match(r.console, /"probe":1/, "the agent's output went to the console");
    // Nothing tells init that no port will come: it waits once, up to its
    // limit, for all three channels together (an init that waited 2 s per
    // channel took over 6 s here).
    assert.equal(portWaitLimitsReached(r), 1, r.console);
  });
});
