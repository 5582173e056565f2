import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { A3sError } from "../errors.js";
import { DOCTOR_HINT } from "../util/host-tool.js";
import { packageRoot } from "../util/package-root.js";

/** The guest programs, and thp-off, a host-side helper built and verified with them (guest/thp-off.c). */
export type GuestProgram = "init" | "probe" | "thp-off";

/** Where the guest programs and their checksum file are: guest/build of the package or the checkout. */
export interface GuestProgramsPlace {
  /** The package's root: node_modules/a3s-rootfs when installed, the checkout otherwise. */
  readonly packageRoot: string;
  readonly dir: string;
  /** `sha256sum` lines for every program in `dir`, written by the Makefile with the programs. */
  readonly checksumFile: string;
  /**
   * A checkout (it has .git) builds the programs with `make -C guest`; an
   * installed package carries them, built when it was packed.
   */
  readonly checkout: boolean;
}

/** The one place the programs are looked up: relative to this module, so it works installed and in a checkout. */
export function guestProgramsPlace(): GuestProgramsPlace {
  const root = packageRoot();
  const dir = join(root, "guest", "build");
  return { packageRoot: root, dir, checksumFile: join(dir, "SHA256SUMS"), checkout: existsSync(join(root, ".git")) };
}

/**
 * The verified bytes of a static guest program shipped with this package,
 * built from guest/*.c by `make -C guest` (in an installed package, when it
 * was packed). Every read is checked against guest/build/SHA256SUMS: a
 * program that is missing, changed or damaged since it was built is an
 * error naming the file, never an init in somebody's rootfs.
 */
export function readGuestProgram(name: GuestProgram): Buffer {
  const place = guestProgramsPlace();
  const path = join(place.dir, name);
  const rebuild = place.checkout
    ? "run: make -C guest   (needs musl-tools; " + DOCTOR_HINT + ")"
    : "reinstall a3s-rootfs (npm install a3s-rootfs): the package is damaged";
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch {
    throw new A3sError("EGUEST", `the guest program ${name} has not been built (${path} is missing)`, { subject: path, hint: rebuild });
  }
  const recorded = recordedChecksum(place.checksumFile, name);
  if (recorded === undefined) {
    throw new A3sError("EGUEST", `${place.checksumFile} has no checksum for the guest program ${name}, so ${path} cannot be verified`, {
      subject: place.checksumFile,
      hint: rebuild,
    });
  }
  const actual = createHash("sha256").update(bytes).digest("hex");
  if (actual !== recorded) {
    throw new A3sError(
      "EGUEST",
      `the guest program ${path} does not match its checksum in ${place.checksumFile} (sha256 ${actual}, recorded ${recorded})`,
      { subject: path, hint: rebuild },
    );
  }
  return bytes;
}

/**
 * The path of a guest program, after its bytes were verified (see
 * `readGuestProgram`). For callers that hand the path to another program;
 * code that reads the bytes itself should take them from readGuestProgram.
 */
export function guestProgramPath(name: GuestProgram): string {
  readGuestProgram(name);
  return join(guestProgramsPlace().dir, name);
}

/** The sha256 recorded for `name`, or undefined when the file or its line is missing. */
function recordedChecksum(checksumFile: string, name: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(checksumFile, "utf8");
  } catch {
    return undefined;
  }
  for (const line of text.split("\n")) {
    // sha256sum's format: 64 hex digits, two spaces (or " *" in binary mode), the name.
    const m = /^([0-9a-f]{64}) [ *](.+)$/.exec(line);
    if (m && m[2] === name) return m[1];
  }
  return undefined;
}
