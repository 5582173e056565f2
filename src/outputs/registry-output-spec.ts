import { A3sError } from "../errors.js";
import { formatReference, parseReference } from "../oci/reference.js";
import type { BootImageFormat } from "../oci/rootfs-artifact.js";
import type { OutputFormat, OutputSpec } from "./output.js";

// The `-o` specs that push to a registry, parsed apart from the push itself
// (registry-output.ts): every build parses its outputs, and only a build that
// pushes should load the registry client (CLI start time).

/** The formats `-o FORMAT:docker://REF` pushes as a boot image artifact. */
export const ARTIFACT_FORMATS: readonly BootImageFormat[] = ["erofs", "ext4", "squashfs", "cpio"];
const DOCKER = "docker://";

/**
 * Parses the outputs that go to a registry: `docker://REF` (the rootfs as an
 * OCI image) and `FORMAT:docker://REF` (a boot image as an artifact). REF is
 * normalised as for pulls and must name a tag (default latest), not a
 * digest. Undefined for any other spec.
 */
export function parseRegistryOutputSpec(spec: string): OutputSpec | undefined {
  let format: OutputFormat = "oci";
  let rest: string;
  if (spec.startsWith(DOCKER)) rest = spec.slice(DOCKER.length);
  else {
    const colon = spec.indexOf(":");
    if (colon <= 0 || !spec.startsWith(DOCKER, colon + 1)) return undefined;
    const named = spec.slice(0, colon);
    if (!(ARTIFACT_FORMATS as readonly string[]).includes(named)) {
      throw new A3sError("EUSAGE", `invalid output ${JSON.stringify(spec)}: ${named} cannot be pushed`, {
        subject: spec,
        hint: `push the rootfs as an OCI image with -o docker://REF, or a boot image with -o FORMAT:docker://REF, FORMAT one of ${ARTIFACT_FORMATS.join(", ")}`,
      });
    }
    format = named as OutputFormat;
    rest = spec.slice(colon + 1 + DOCKER.length);
  }
  const ref = parseReference(rest);
  if (ref.digest !== undefined) {
    throw new A3sError("EUSAGE", `invalid output ${JSON.stringify(spec)}: a push names a tag, not a digest`, {
      subject: spec,
      hint: "e.g. -o docker://registry.example.com/team/box:v1; the digest is reported when the push is done",
    });
  }
  const reference = formatReference(ref);
  return { format, path: `${DOCKER}${reference}`, push: { reference } };
}
