import { spawn } from "node:child_process";
import type { ToolRequirement } from "./requirements.js";

/** How long a tool may take to say its version before it counts as not saying it. */
const VERSION_TIMEOUT_MS = 5000;

/**
 * The version a tool reports: the first dotted number it prints for its
 * version arguments (whatever its exit status: some print their usage and
 * exit 1), or dpkg's version of its package when it has no version flag.
 * Undefined when neither says.
 */
export async function toolVersion(req: ToolRequirement, path: string): Promise<string | undefined> {
  if (req.versionArgs) return parseVersion(await output(path, req.versionArgs));
  const dpkg = await output("dpkg-query", ["-W", "-f=${Version}", req.debianPackage]);
  return parseVersion(` ${dpkg}`);
}

/**
 * The first version-like number in a tool's text: dotted ("QEMU emulator
 * version 10.0.2", "BusyBox v1.35.0", "1:10.0.2+ds-2") or, failing that, a
 * plain one ("kmod version 30"). A number glued to letters ("x86_64",
 * "64-bit") is not a version.
 */
export function parseVersion(text: string): string | undefined {
  return /(?:^|[\s(:v'])(\d+(?:\.\d+)+)/.exec(text)?.[1] ?? /(?:^|\s)(\d+)(?=\s|$)/.exec(text)?.[1];
}

function output(file: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, LC_ALL: "C" } });
    let text = "";
    const take = (b: Buffer): void => {
      if (text.length < 4096) text += b.toString();
    };
    child.stdout.on("data", take);
    child.stderr.on("data", take);
    const timer = setTimeout(() => child.kill("SIGKILL"), VERSION_TIMEOUT_MS);
    child.on("error", () => {
      clearTimeout(timer);
      resolve("");
    });
    child.on("close", () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
}
