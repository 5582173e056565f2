import { readFileSync } from "node:fs";
import { findExecutable } from "../util/host-tool.js";
import { runningAsRoot } from "../util/running-as-root.js";

/** What decides how a missing package is installed: the distribution, apt, and who we are. */
export interface HostSystem {
  /** PRETTY_NAME from /etc/os-release, e.g. "Debian GNU/Linux 12 (bookworm)". */
  readonly name: string;
  /** ID, e.g. "debian", "ubuntu". */
  readonly id: string;
  /** VERSION_CODENAME, e.g. "bookworm". */
  readonly codename: string;
  /** Debian or a derivative (ID or ID_LIKE names debian or ubuntu) with apt-get: package names mean what the list says. */
  readonly debianLike: boolean;
  readonly root: boolean;
}

export function hostSystem(osRelease = "/etc/os-release"): HostSystem {
  let text = "";
  try {
    text = readFileSync(osRelease, "utf8");
  } catch {
    // Not a systemd-era Linux; everything below then reads as unknown.
  }
  const field = (key: string): string => {
    const m = new RegExp(`^${key}=(.*)$`, "m").exec(text)?.[1]?.trim() ?? "";
    return m.replace(/^"(.*)"$/, "$1");
  };
  const id = field("ID");
  const family = `${id} ${field("ID_LIKE")}`.split(/\s+/);
  return {
    name: field("PRETTY_NAME") || "unknown system",
    id,
    codename: field("VERSION_CODENAME"),
    debianLike: (family.includes("debian") || family.includes("ubuntu")) && findExecutable("apt-get") !== undefined,
    root: runningAsRoot(),
  };
}
