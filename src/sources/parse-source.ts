import { A3sError } from "../errors.js";
import { busyboxSource, type AppletLinks } from "./busybox.js";
import { debootstrapSource } from "./debootstrap.js";
import { dockerArchiveSource } from "./docker-archive-source.js";
import { dockerRegistrySource } from "./docker-registry-source.js";
import { ociLayoutSource } from "./oci-layout-source.js";
import { scratchSource } from "./scratch.js";
import type { RootfsSource } from "./source.js";
import type { TrimProfile } from "./trim.js";

/** Options some sources take, from the CLI's flags or the API. Each source reads only its own. */
export interface SourceOptions {
  /** busybox: applet links as symlinks (default) or hardlinks. */
  readonly appletLinks?: AppletLinks;
  /** debootstrap: extra packages. */
  readonly include?: readonly string[];
  /** debootstrap: what to trim (default minimal). */
  readonly trim?: TrimProfile;
  /** Container images: the platform to pick from an index, "os/arch[/variant]" (default: the host's). */
  readonly platform?: string;
  /** Registries: "user:password". */
  readonly creds?: string;
  /** Registries: allow plain HTTP to a non-loopback registry. */
  readonly insecure?: boolean;
}

/** Each source kind, from the part of the spec after "KIND:". */
const SOURCES: Record<string, (rest: string, opts: SourceOptions) => RootfsSource> = {
  scratch: () => scratchSource,
  busybox: (rest, o) => busyboxSource(rest, o.appletLinks),
  debootstrap: (rest, o) =>
    debootstrapSource(rest, { ...(o.include ? { include: o.include } : {}), ...(o.trim ? { trim: o.trim } : {}) }),
  docker: (rest, o) => dockerRegistrySource(rest, o),
  oci: (rest, o) => ociLayoutSource(rest, o.platform ? { platform: o.platform } : {}),
  "docker-archive": (rest, o) => dockerArchiveSource(rest, o.platform ? { platform: o.platform } : {}),
};

/** Parses a source spec such as "scratch" (the default), "busybox" or "debootstrap:bookworm". */
export function parseSourceSpec(spec: string, opts: SourceOptions = {}): RootfsSource {
  const colon = spec.indexOf(":");
  const kind = colon < 0 ? spec : spec.slice(0, colon);
  const make = SOURCES[kind];
  if (!make) {
    throw new A3sError("EUSAGE", `unknown source ${JSON.stringify(spec)}; available: ${Object.keys(SOURCES).join(", ")}`, {
      subject: spec,
    });
  }
  return make(colon < 0 ? "" : spec.slice(colon + 1), opts);
}
