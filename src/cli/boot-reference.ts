import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RootfsBuilder } from "../builder/rootfs-builder.js";
import { parsePlatform } from "../oci/platform.js";
import { parseReference } from "../oci/reference.js";
import { pullBootImage, type PulledBootImage } from "../oci/registry/boot-image-pull.js";
import { RegistryClient } from "../oci/registry/client.js";
import { parseCredsFlag } from "../oci/registry/credentials.js";
import { dockerRegistrySource } from "../sources/docker-registry-source.js";

const DOCKER = "docker://";

/** What `run` boots: a file or directory, and what to remove afterwards. */
export interface BootTarget {
  readonly path: string;
  /** Set when the target was an a3s boot image pulled from a registry. */
  readonly pulled?: PulledBootImage;
  dispose(): Promise<void>;
}

export interface BootReferenceOptions {
  readonly creds?: string;
  readonly insecure?: boolean;
  readonly platform?: string;
  readonly progress: (message: string) => void;
  readonly warn: (message: string) => void;
  readonly signal?: AbortSignal;
}

/**
 * Resolves what `run` was given to a path to boot. A path is itself.
 * `docker://REF` naming an a3s boot image (pushed with
 * `build -o FORMAT:docker://REF`) is pulled into the content store,
 * verified, and booted from there, without building anything. Any other
 * image (a container image, or an OCI image pushed with `-o docker://REF`)
 * is built first into a temporary erofs image, as `build docker://REF
 * -o erofs:FILE` would, with the image's Entrypoint as the agent; a
 * progress line says so.
 */
export async function resolveBootTarget(image: string, opts: BootReferenceOptions): Promise<BootTarget> {
  const none = async (): Promise<void> => undefined;
  if (!image.startsWith(DOCKER)) return { path: image, dispose: none };
  const rest = image.slice(DOCKER.length);
  const ref = parseReference(rest);
  const credentials = opts.creds ? parseCredsFlag(opts.creds) : undefined;
  const client = new RegistryClient({
    warn: opts.warn,
    progress: opts.progress,
    ...(credentials ? { credentials } : {}),
    ...(opts.insecure ? { insecure: true } : {}),
  });
  const pulled = await pullBootImage(client, ref, {
    progress: opts.progress,
    ...(opts.platform ? { platform: parsePlatform(opts.platform) } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  if (pulled) {
    const how = pulled.downloaded ? "downloaded and verified" : "found in the cache and verified again";
    opts.progress(`${image}: a3s boot image (${pulled.format}, ${(pulled.size / 2 ** 20).toFixed(1)} MiB, ${pulled.digest.slice(0, 19)}), ${how}`);
    return { path: pulled.path, pulled, dispose: none };
  }
  opts.progress(
    `${image} is a container image, not an a3s boot image: building it into a temporary erofs image first ` +
      "(push a boot image with `a3s-rootfs build ... -o erofs:docker://REF` to boot without building)",
  );
  const dir = await mkdtemp(join(tmpdir(), "a3s-run-"));
  try {
    const out = join(dir, "rootfs.erofs");
    await new RootfsBuilder()
      .withSource(
        dockerRegistrySource(`//${rest}`, {
          ...(opts.platform ? { platform: opts.platform } : {}),
          ...(credentials ? { creds: credentials } : {}),
          ...(opts.insecure ? { insecure: true } : {}),
        }),
      )
      .withOutput("erofs", out)
      .onWarning(opts.warn)
      .onProgress(opts.progress)
      .build();
    return { path: out, dispose: () => rm(dir, { recursive: true, force: true }) };
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}
