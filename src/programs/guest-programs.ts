import { accessSync, constants } from "node:fs";
import { fileURLToPath } from "node:url";
import { A3sError } from "../errors.js";

export type GuestProgram = "init" | "probe";

/**
 * The static guest programs shipped with this package, built from guest/*.c
 * by `make -C guest` (scripts/setup.sh does it). The path is relative to this
 * module so it works from a clone and from an installed package alike.
 */
export function guestProgramPath(name: GuestProgram): string {
  const path = fileURLToPath(new URL(`../../../guest/build/${name}`, import.meta.url));
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new A3sError("EGUEST", `the guest program ${name} has not been built (${path} is missing)`, {
      subject: path,
      hint: "run: make -C guest   (needs musl-tools, or gcc with a static libc)",
    });
  }
  return path;
}
