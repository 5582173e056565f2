// Ten boots in a row across the three image kinds the guest boots from
// (4 cpio initramfs, 3 erofs, 3 ext4), with the microVM kernel when one is
// built, else Debian's: every boot must start the agent and end with the
// status the agent chose. A boot that fails now and then (as the PIT tick
// once made them: microvm-machine.ts) fails this file; nothing is retried.
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { after, describe, it } from "node:test";
import { findMicrovmKernel } from "../src/boot/microvm-kernel-cache.js";
import { boot, buildProbeImage, isolateRunDirectories, leftoverVmProcesses } from "./helpers/boot.js";
import { tempDir } from "./helpers/temp-dir.js";

const runDirs = isolateRunDirectories();
const kernel = (await findMicrovmKernel()) ? "microvm" : "debian";
const PLAN = [
  ...Array.from({ length: 4 }, () => "cpio" as const),
  ...Array.from({ length: 3 }, () => "erofs" as const),
  ...Array.from({ length: 3 }, () => "ext4" as const),
];

interface Probe {
  probe: number;
  argv: string[];
  loopback_up: boolean;
  bind_127_0_0_1: true | string;
  bind_ipv6_loopback: true | string;
  mounts: { target: string; type: string }[];
}

describe(`${PLAN.length} boots in a row, ${kernel} kernel`, () => {
  const dir = tempDir();
  const images: Record<(typeof PLAN)[number], Promise<string>> = {
    cpio: buildProbeImage(dir, "cpio", "rootfs.cpio.gz"),
    erofs: buildProbeImage(dir, "erofs", "rootfs.erofs"),
    ext4: buildProbeImage(dir, "ext4", "rootfs.ext4"),
  };
  after(() => {
    assert.deepEqual(leftoverVmProcesses(runDirs), [], "no VM is left running");
    rmSync(runDirs, { recursive: true, force: true });
  });

  PLAN.forEach((kind, i) => {
    // A status of its own per boot: one boot's result cannot pass for another's.
    const status = 10 + i;
    it(`boot ${i + 1}: ${kind}, the agent runs and exits ${status}`, async () => {
      const r = await boot({ image: await images[kind], kernel, args: ["--exit", String(status)] });
      assert.equal(r.setupError, null);
      assert.equal(r.exitCode, status, r.stderr);
      assert.ok(r.timeline.initStartMs !== null && r.timeline.agentStartMs !== null, JSON.stringify(r.timeline));
      const p = JSON.parse(r.stdout.trim().split("\n")[0] as string) as Probe;
      assert.equal(p.probe, 1);
      assert.deepEqual(p.argv.slice(1), ["--exit", String(status)]);
      assert.equal(p.loopback_up, true, "init brought lo up");
      // Loopback works for IPv4; IPv6 only where the kernel has it (the microVM kernel is built without).
      assert.deepEqual([p.bind_127_0_0_1, p.bind_ipv6_loopback], [true, kernel === "microvm" ? "EAFNOSUPPORT" : true]);
      const root = p.mounts.find((m) => m.target === "/");
      assert.equal(root?.type, kind === "cpio" ? "rootfs" : kind, JSON.stringify(p.mounts));
    });
  });
});
