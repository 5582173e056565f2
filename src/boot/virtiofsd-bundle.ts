import {
  bundleCacheDir,
  bundleCommand as toolBundleCommand,
  listBundles as listToolBundles,
  readManifest as readToolManifest,
  verifyBundle as verifyToolBundle,
  type BundleKind,
  type ToolBundleManifest,
} from "../provision/index.js";

export { MANIFEST, sha256File } from "../provision/index.js";

/**
 * A virtiofsd provisioned into the cache (virtiofsd-provision.ts): a tool
 * bundle (provision/tool-bundle.ts) holding virtiofsd, Debian 13's loader
 * and the libraries it needs, in CACHE/virtiofsd/virtiofsd_VERSION+SET/.
 */
export type VirtiofsdManifest = ToolBundleManifest;

export const VIRTIOFSD_KIND: BundleKind = { name: "virtiofsd", refetch: "a3s-rootfs virtiofsd --fetch" };

/** The cache folder holding every provisioned virtiofsd. */
export function virtiofsdCacheDir(cache: string): string {
  return bundleCacheDir(cache, VIRTIOFSD_KIND);
}

export function readManifest(dir: string): Promise<VirtiofsdManifest | undefined> {
  return readToolManifest(dir, VIRTIOFSD_KIND);
}

/** Checks every file of the bundle against its recorded SHA256; runs on every use. */
export function verifyBundle(dir: string, m: VirtiofsdManifest): Promise<void> {
  return verifyToolBundle(dir, m, VIRTIOFSD_KIND);
}

/** Every published virtiofsd bundle in the cache, newest first. */
export function listBundles(cache: string): Promise<{ dir: string; manifest: VirtiofsdManifest }[]> {
  return listToolBundles(cache, VIRTIOFSD_KIND);
}

/** The argv that runs a bundle's virtiofsd through the bundle's own loader. */
export function bundleCommand(dir: string, m: VirtiofsdManifest): { file: string; prefix: string[] } {
  const cmd = toolBundleCommand(dir, m, "virtiofsd");
  return { file: cmd.file, prefix: [...cmd.prefix] };
}
