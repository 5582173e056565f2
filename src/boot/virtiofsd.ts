import { spawn, type ChildProcess } from "node:child_process";
import { access } from "node:fs/promises";
import { A3sError } from "../errors.js";
import { findExecutable } from "../util/host-tool.js";

/** Where Debian installs virtiofsd (package virtiofsd, Debian 13 and later); PATH is searched too. */
const VIRTIOFSD_PATHS = ["/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd"];

export async function findVirtiofsd(): Promise<string | undefined> {
  for (const p of VIRTIOFSD_PATHS) {
    if (await access(p).then(() => true, () => false)) return p;
  }
  return findExecutable("virtiofsd");
}

/**
 * Starts one virtiofsd for one share and resolves once its socket exists.
 * A read-only share is exported read-only by virtiofsd itself, so the
 * guest cannot write to the host through it whatever it mounts.
 */
export async function startVirtiofsd(binary: string, dir: string, socket: string, readOnly: boolean): Promise<ChildProcess> {
  const args = [`--socket-path=${socket}`, `--shared-dir=${dir}`, "--cache=never", "--sandbox=none"];
  if (readOnly) args.push("--readonly");
  const child = spawn(binary, args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (b: Buffer) => (stderr += b.toString()));
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) break;
    if (await access(socket).then(() => true, () => false)) return child;
    await new Promise((r) => setTimeout(r, 25));
  }
  child.kill("SIGKILL");
  throw new A3sError("EVIRTIOFSD", `virtiofsd did not start for ${dir}: ${stderr.trim() || "no socket after 5 s"}`, {
    subject: dir,
  });
}
