import { A3sError } from "../errors.js";
import { checkHost } from "./check-host.js";
import { applyFixes, planFixes, runnableHere } from "./fix-host.js";
import { hostSystem } from "./host-system.js";
import type { RequirementGroup } from "./requirements.js";

/**
 * Makes sure nothing the groups require is missing before a command starts
 * (`demo` on a fresh machine): the failed checks are fixed the way `doctor
 * --fix` fixes them, as root on Debian or Ubuntu (so QEMU comes from
 * bookworm-backports on Debian 12); elsewhere the error lists the commands.
 * Warnings (no KVM, no virtiofsd yet, no kernel cached yet) are left to the
 * command, which copes with each.
 */
export async function ensureHostRequirements(groups: readonly RequirementGroup[], progress: (m: string) => void): Promise<void> {
  const system = hostSystem();
  const report = await checkHost({ groups, system });
  const failed = report.checks.filter((c) => c.status === "fail");
  if (failed.length === 0) return;
  const steps = planFixes({ checks: failed });
  const what = failed.map((c) => c.id).join(", ");
  if (steps.length === 0 || !steps.every((s) => runnableHere(s, system))) {
    throw new A3sError("ETOOL", `missing on this host: ${what} (the doctor's ${groups.join(", ")} checks)`, {
      subject: what,
      hint: `a3s-rootfs doctor says why; as root on Debian or Ubuntu, a3s-rootfs doctor --fix installs it${steps.length > 0 ? `; or run: ${steps.map((s) => s.command).join("; ")}` : ""}`,
    });
  }
  progress(`installing what is missing on this host: ${what}`);
  await applyFixes(steps, { cacheDir: report.cacheDir, progress });
  const still = (await checkHost({ groups, system })).checks.filter((c) => c.status === "fail");
  if (still.length > 0) {
    throw new A3sError("ETOOL", `still missing after installing: ${still.map((c) => `${c.id} (${c.detail ?? "failed"})`).join(", ")}`, { hint: "a3s-rootfs doctor" });
  }
}
