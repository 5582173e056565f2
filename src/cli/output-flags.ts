import type { ErofsCompression } from "../formats/erofs/index.js";
import type { LayerCompression } from "../oci/media-types.js";
import { parseCredsFlag } from "../oci/registry/credentials.js";
import type { OutputSpec } from "../outputs/output.js";

/**
 * The build flags that shape an output beyond its spec: --layer-compression
 * for OCI images (and a pushed cpio), --erofs-compression for erofs images
 * (pushed ones too), and for pushes the same --creds and --insecure the pull
 * side takes. Outputs they do not concern pass unchanged.
 */
export function withOutputFlags(
  spec: OutputSpec,
  flags: {
    compression: LayerCompression | undefined;
    erofsCompression?: ErofsCompression | undefined;
    creds: string | undefined;
    insecure: boolean | undefined;
  },
): OutputSpec {
  const compressible = spec.format === "oci" || (spec.format === "cpio" && spec.push !== undefined);
  const out: OutputSpec = {
    ...spec,
    ...(compressible && flags.compression ? { compression: flags.compression } : {}),
    ...(spec.format === "erofs" && flags.erofsCompression ? { erofsCompression: flags.erofsCompression } : {}),
  };
  if (!spec.push) return out;
  return {
    ...out,
    push: {
      ...spec.push,
      ...(flags.creds ? { credentials: parseCredsFlag(flags.creds) } : {}),
      ...(flags.insecure ? { insecure: true } : {}),
    },
  };
}
