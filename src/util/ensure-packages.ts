import { spawnSync } from "node:child_process";
import { A3sError } from "../errors.js";
import { DOCTOR_HINT, findExecutable } from "./host-tool.js";
import { runningAsRoot } from "./running-as-root.js";

/** A command the program needs, and the Debian package that provides it. */
export interface HostRequirement {
  readonly command: string;
  readonly debianPackage: string;
}

/**
 * Makes sure each command exists. What is missing is installed with apt-get
 * when we run as root on a machine with apt; otherwise the error says exactly
 * what to install.
 */
export function ensureHostPackages(reqs: readonly HostRequirement[], progress: (m: string) => void): void {
  const missing = [...new Set(reqs.filter((r) => !findExecutable(r.command)).map((r) => r.debianPackage))];
  if (missing.length === 0) return;
  const command = `apt-get install -y ${missing.join(" ")}`;
  if (!runningAsRoot() || !findExecutable("apt-get")) {
    throw new A3sError("ETOOL", `missing Debian packages: ${missing.join(", ")}`, { hint: `as root: ${command}   (${DOCTOR_HINT})` });
  }
  progress(`installing ${missing.join(" ")} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  spawnSync("apt-get", ["update", "-qq"], { stdio: "ignore", env });
  const r = spawnSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing], { stdio: ["ignore", "ignore", "pipe"], env });
  if (r.status !== 0) {
    throw new A3sError("ETOOL", `apt-get could not install ${missing.join(" ")}: ${r.stderr?.toString().trim()}`, { hint: `${command}   (${DOCTOR_HINT})` });
  }
}
