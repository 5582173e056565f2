import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { access, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { microvmMachine } from "./microvm-machine.js";

export type Accelerator = "kvm" | "tcg";
export type AcceleratorChoice = Accelerator | "auto";

export interface AcceleratorDecision {
  readonly accel: Accelerator;
  /** Why, for the user: "/dev/kvm is not usable", "KVM probe passed", ... */
  readonly reason: string;
}

/** How long a KVM guest may take to print its first kernel line before KVM counts as broken. */
const KVM_PROBE_MS = 5000;

/**
 * KVM when /dev/kvm is usable and guests really run on it, else TCG.
 * A /dev/kvm that opens is not enough: under some nested setups the guest
 * never gets past the firmware. So the first time on each host boot, a tiny
 * probe boots the kernel under KVM and waits for its first console line; the
 * verdict is cached per boot id, so the probe costs at most once per boot.
 */
export async function chooseAccelerator(
  choice: AcceleratorChoice,
  qemu: string,
  kernelPath: string,
  cacheDir: string,
): Promise<AcceleratorDecision> {
  if (choice === "tcg") return { accel: "tcg", reason: "requested" };
  const usable = await access("/dev/kvm", constants.R_OK | constants.W_OK).then(
    () => true,
    () => false,
  );
  if (choice === "kvm") return { accel: "kvm", reason: usable ? "requested" : "requested, though /dev/kvm is not usable" };
  if (!usable) return { accel: "tcg", reason: "/dev/kvm is not usable" };

  const bootId = (await readFile("/proc/sys/kernel/random/boot_id", "utf8").catch(() => "unknown")).trim();
  const verdictFile = join(cacheDir, "kvm-probe.json");
  const cached = await readFile(verdictFile, "utf8").then(
    (s) => JSON.parse(s) as { bootId: string; works: boolean },
    () => undefined,
  );
  let works = cached?.bootId === bootId ? cached.works : undefined;
  if (works === undefined) {
    works = await probeKvm(qemu, kernelPath);
    await mkdir(cacheDir, { recursive: true });
    await writeFile(verdictFile, JSON.stringify({ bootId, works }) + "\n");
  }
  return works
    ? { accel: "kvm", reason: "/dev/kvm works" }
    : { accel: "tcg", reason: "/dev/kvm exists but guests do not run on it (probe failed)" };
}

function probeKvm(qemu: string, kernelPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(
      qemu,
      ["-M", microvmMachine(), "-accel", "kvm", "-cpu", "host", "-m", "128", "-nodefaults", "-no-user-config", "-display", "none",
        "-no-reboot", "-kernel", kernelPath, "-append", "console=ttyS0 panic=-1", "-serial", "stdio"],
      { stdio: ["ignore", "pipe", "ignore"] },
    );
    let out = "";
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      child.kill("SIGKILL");
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), KVM_PROBE_MS);
    child.stdout.on("data", (b: Buffer) => {
      out += b.toString("latin1");
      if (out.includes("Linux version")) done(true);
    });
    child.on("error", () => done(false));
    child.on("exit", () => done(out.includes("Linux version")));
  });
}
