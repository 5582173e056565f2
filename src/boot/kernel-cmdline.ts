import { A3sError } from "../errors.js";
import { kernelCmdlineArg, parseUserSpec } from "../layout/guest-config.js";
import type { Accelerator } from "./accelerator.js";
import { hostTscKhz } from "./host-tsc.js";

/**
 * The kernel command line: kernel and init messages on the serial console,
 * a panic ends the VM at once, and a3s.* parameters (docs/guest-protocol.md
 * §4): `a3s.job=1` for a run of this host, whose job comes on the control
 * channel; overrides of the image's config for other callers.
 */
export async function kernelCommandLine(
  accel: Accelerator,
  opts: { user?: string; env?: readonly string[]; args?: readonly string[]; job?: boolean } = {},
): Promise<string> {
  const parts = ["console=ttyS0", "panic=-1", "quiet"];
  // init waits at the ready point for its job on the control channel (§8)
  if (opts.job) parts.push(kernelCmdlineArg("job", "1"));
  if (accel === "tcg") {
    // Under TCG the guest's TSC calibration can fail on a busy host and hang
    // the boot; giving the host's TSC rate (see host-tsc.ts) skips it.
    const khz = await hostTscKhz();
    if (khz) parts.push(`tsc_early_khz=${khz}`);
  }
  if (opts.user !== undefined) {
    const u = parseUserSpec(opts.user);
    parts.push(kernelCmdlineArg("user", `${u.uid}:${u.gid}`));
  }
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
