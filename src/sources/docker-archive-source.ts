import { A3sError } from "../errors.js";
import { hostPlatform, parsePlatform } from "../oci/platform.js";
import { loadImage, type ImageFileSourceOptions } from "./oci-layout-source.js";
import type { RootfsSource } from "./source.js";

/**
 * `docker-archive:FILE[:REF]`: an image from a `docker save` tarball (plain
 * or compressed). REF is a RepoTag or "@N" when the archive holds several
 * images; the first ":" ends FILE.
 */
export function dockerArchiveSource(rest: string, opts: ImageFileSourceOptions = {}): RootfsSource {
  const colon = rest.indexOf(":");
  const file = colon < 0 ? rest : rest.slice(0, colon);
  const ref = colon < 0 ? undefined : rest.slice(colon + 1);
  if (file === "" || ref === "") {
    throw new A3sError("EUSAGE", `invalid source docker-archive:${rest}: expected docker-archive:FILE or docker-archive:FILE:REF`, {
      subject: `docker-archive:${rest}`,
      hint: "e.g. docker-archive:app.tar or docker-archive:all.tar:myapp:1.2",
    });
  }
  const platform = opts.platform ? parsePlatform(opts.platform) : hostPlatform();
  return {
    spec: `docker-archive:${rest}`,
    providesAgent: true,
    load: async (ctx) => {
      // Loaded here, not at the top: a build from another source never needs it (CLI start time).
      const { openDockerArchive } = await import("../oci/archive/docker-archive.js");
      const opened = await openDockerArchive(file, ref, {
        platform,
        platformChosen: opts.platform !== undefined,
        scratchDir: ctx.scratchDir,
        ...(opts.limits?.maxImageBytes !== undefined ? { maxArchiveBytes: opts.limits.maxImageBytes } : {}),
      });
      try {
        return await loadImage(opened.choice, opts, ctx, { archiveFormat: opened.format, ...(opened.tags.length > 0 ? { tags: opened.tags } : {}) });
      } finally {
        // The layers are in the content store now; a decompressed copy of the archive is not needed.
        await opened.dispose();
      }
    },
  };
}
