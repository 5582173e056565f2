import type { Accelerator } from "./accelerator.js";
import type { BootMedia } from "./boot-media.js";
import { kernelCmdlineOptions, type KernelBundle } from "./kernel-bundle.js";
import { kernelCommandLine } from "./kernel-cmdline.js";
import { bootFirmware, type MicrovmFirmware } from "./microvm-machine.js";
import type { VmSpec } from "./qemu-command.js";
import { rootVerityValue, type VerityRoot } from "./verity-root.js";

/** The boot's part of a VM spec, and what a run's report or a snapshot's manifest says of it. */
export interface BootSpec {
  readonly spec: Pick<VmSpec, "kernelPath" | "initrd" | "disk" | "cmdline" | "accel" | "noAcpi" | "firmware">;
  /** Which firmware the machine starts (qboot where QEMU ships it). */
  readonly firmware: MicrovmFirmware;
  /** Whether the guest has ACPI (the microVM kernel boots without it under TCG). */
  readonly acpi: boolean;
}

/**
 * How a machine boots to its job, the same for a run and for a snapshot's
 * boot: the kernel with its initramfs (and root disk), the command line
 * that has init wait for a job on the control channel (with the root hash
 * of a verified root), the accelerator and the firmware.
 */
export async function bootSpec(opts: { qemu: string; kernel: KernelBundle; media: BootMedia; accel: Accelerator; verity?: VerityRoot }): Promise<BootSpec> {
  const { kernel, media, accel, verity } = opts;
  const firmware = bootFirmware(opts.qemu);
  const cmdlineOptions = kernelCmdlineOptions(kernel, accel);
  const cmdline = await kernelCommandLine(accel, {
    job: true,
    channelDevices: true,
    ...cmdlineOptions,
    ...(verity ? { rootVerity: rootVerityValue(verity) } : {}),
  });
  return {
    spec: {
      kernelPath: kernel.kernelPath,
      initrd: media.initrd,
      ...(media.disk ? { disk: media.disk } : {}),
      cmdline,
      accel,
      ...(cmdlineOptions.noAcpi ? { noAcpi: true } : {}),
      ...firmware.spec,
    },
    firmware: firmware.name,
    acpi: !cmdlineOptions.noAcpi,
  };
}
