import { A3sError } from "../errors.js";
import type { OutputSpec } from "./output.js";

// `-o oci:DIR[:TAG]` parsed apart from the layout writer (oci-layout-output.ts):
// every build parses its outputs, and only one that writes a layout should
// load the image and tar code (CLI start time).

/** The tag an `oci:DIR` output names its image by when none is given. */
export const DEFAULT_LAYOUT_TAG = "latest";
/** What a tag may be (the distribution reference grammar's tag). */
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/**
 * Parses `oci:DIR[:TAG]`: the tag is what follows the last ":" after the
 * last "/" when it is a valid tag, so "oci:out/img:v1" is DIR out/img and
 * TAG v1, and "oci:img" is TAG latest. Undefined for specs of other formats.
 */
export function parseOciLayoutSpec(spec: string): OutputSpec | undefined {
  if (!spec.startsWith("oci:")) return undefined;
  let path = spec.slice("oci:".length);
  let tag = DEFAULT_LAYOUT_TAG;
  const colon = path.lastIndexOf(":");
  if (colon > path.lastIndexOf("/") && colon >= 0) {
    const candidate = path.slice(colon + 1);
    if (!TAG.test(candidate)) {
      throw new A3sError("EUSAGE", `invalid output ${JSON.stringify(spec)}: ${JSON.stringify(candidate)} is not a valid tag`, {
        subject: spec,
        hint: "write oci:DIR or oci:DIR:TAG; a tag has letters, digits, _ . - and starts with a letter, digit or _",
      });
    }
    tag = candidate;
    path = path.slice(0, colon);
  }
  if (path === "") throw new A3sError("EUSAGE", `invalid output ${JSON.stringify(spec)}: no directory`, { subject: spec, hint: "e.g. -o oci:rootfs-oci:v1" });
  return { format: "oci", path, tag };
}
