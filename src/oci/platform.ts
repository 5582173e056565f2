import { A3sError } from "../errors.js";
import type { Descriptor, DescriptorPlatform, ImageIndex } from "./manifest.js";
import { ATTESTATION_MANIFEST, DOCKER_REFERENCE_TYPE_ANNOTATION, IMAGE_MANIFEST_MEDIA_TYPES, INDEX_MEDIA_TYPES } from "./media-types.js";

/** A platform as OCI names it: "linux/arm64/v8" is {os: linux, architecture: arm64, variant: v8}. */
export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
}

/** Node's process.arch → the GOARCH names OCI uses. */
const NODE_TO_OCI_ARCH: Readonly<Record<string, string>> = {
  x64: "amd64",
  arm64: "arm64",
  arm: "arm",
  ia32: "386",
  ppc64: "ppc64le",
  s390x: "s390x",
  riscv64: "riscv64",
  loong64: "loong64",
  mips: "mips",
  mipsel: "mipsle",
};

/** Aliases people (and uname) use for the same architectures. */
const ARCH_ALIASES: Readonly<Record<string, string>> = {
  x86_64: "amd64",
  "x86-64": "amd64",
  aarch64: "arm64",
  armhf: "arm",
  armel: "arm",
  i386: "386",
  i686: "386",
};

/** The platform of this machine: what a build runs on unless --platform says otherwise. */
export function hostPlatform(): Platform {
  const architecture = NODE_TO_OCI_ARCH[process.arch] ?? process.arch;
  if (architecture === "arm") {
    const v = (process.config.variables as { arm_version?: string }).arm_version;
    return { os: "linux", architecture, variant: v ? `v${v}` : "v7" };
  }
  return { os: "linux", architecture };
}

/** Parses "--platform OS/ARCH[/VARIANT]" (also "ARCH" alone, meaning linux/ARCH). */
export function parsePlatform(text: string): Platform {
  const parts = text.trim().split("/");
  const valid = (s: string | undefined): s is string => s !== undefined && /^[A-Za-z0-9_.-]+$/.test(s);
  if (parts.length === 1 && valid(parts[0])) return normalisePlatform({ os: "linux", architecture: parts[0] });
  if ((parts.length === 2 || parts.length === 3) && parts.every(valid)) {
    return normalisePlatform({ os: parts[0]!, architecture: parts[1]!, ...(parts[2] ? { variant: parts[2] } : {}) });
  }
  throw new A3sError("EUSAGE", `invalid platform ${JSON.stringify(text)}`, {
    subject: text,
    hint: "write it as OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm64/v8",
  });
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ""}`;
}

/**
 * Lower-cases and maps aliases, and drops variants that are the default for
 * their architecture (arm64 is v8, amd64 is v1), the way containerd compares
 * platforms: "linux/arm64" and "linux/arm64/v8" are the same platform.
 */
export function normalisePlatform(p: Platform | DescriptorPlatform): Platform {
  const os = p.os.toLowerCase();
  let architecture = p.architecture.toLowerCase();
  architecture = ARCH_ALIASES[architecture] ?? architecture;
  let variant = p.variant?.toLowerCase();
  if (p.architecture.toLowerCase() === "armel") variant ??= "v6";
  if (architecture === "arm64" && (variant === "v8" || variant === "8")) variant = undefined;
  if (architecture === "amd64" && variant === "v1") variant = undefined;
  if (architecture === "arm") variant = variant === undefined || variant === "7" ? "v7" : variant.startsWith("v") ? variant : `v${variant}`;
  return { os, architecture, ...(variant ? { variant } : {}) };
}

/** True when an image built for `candidate` runs as `wanted`. */
export function platformMatches(wanted: Platform, candidate: Platform | DescriptorPlatform): boolean {
  const w = normalisePlatform(wanted);
  const c = normalisePlatform(candidate);
  return w.os === c.os && w.architecture === c.architecture && (w.variant ?? "") === (c.variant ?? "");
}

/**
 * True for index entries that are not images to run: buildkit's attestation
 * manifests (SBOM, provenance), marked by an annotation and the platform
 * "unknown/unknown".
 */
export function isAttestation(d: Descriptor): boolean {
  return (
    d.annotations?.[DOCKER_REFERENCE_TYPE_ANNOTATION] === ATTESTATION_MANIFEST ||
    (d.platform?.os === "unknown" && d.platform.architecture === "unknown")
  );
}

/** What to do with an index for a wanted platform: the image to take, or nested indexes to look into, in order. */
export interface IndexChoice {
  /** The image manifest for the platform, when this index has one directly. */
  readonly manifest?: Descriptor;
  /** Nested indexes whose platform (if they name one) fits, to search next in this order. */
  readonly nested: readonly Descriptor[];
}

/**
 * Picks an index entry for `wanted`. Image manifests whose platform matches
 * come first (the first such entry wins, as in docker and containerd);
 * attestations and entries of unknown media types are skipped. An entry
 * without a platform is taken only when the index has a single runnable
 * entry (some tools write one-image indexes without platforms).
 */
export function chooseFromIndex(index: ImageIndex, wanted: Platform): IndexChoice {
  const entries = index.manifests.filter((d) => !isAttestation(d));
  const images = entries.filter((d) => IMAGE_MANIFEST_MEDIA_TYPES.has(d.mediaType));
  const nested = entries.filter((d) => INDEX_MEDIA_TYPES.has(d.mediaType) && (!d.platform || platformMatches(wanted, d.platform)));
  const match = images.find((d) => d.platform !== undefined && platformMatches(wanted, d.platform));
  if (match) return { manifest: match, nested };
  if (images.length === 1 && images[0]!.platform === undefined && nested.length === 0) return { manifest: images[0]!, nested };
  return { nested };
}

/** The platforms an index offers (for the error when none fits). */
export function offeredPlatforms(index: ImageIndex): string[] {
  return index.manifests
    .filter((d) => !isAttestation(d) && d.platform !== undefined)
    .map((d) => formatPlatform(normalisePlatform(d.platform!)));
}
