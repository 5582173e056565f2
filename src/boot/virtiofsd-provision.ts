import { DEBIAN_13_SUITES, provisionBundle, type BundleSpec } from "../provision/index.js";
import { VIRTIOFSD_KIND } from "./virtiofsd-bundle.js";

/** Debian 13 (trixie) is the first Debian release that packages the Rust virtiofsd. */
export const VIRTIOFSD_SUITES = DEBIAN_13_SUITES;
/** virtiofsd and the packages holding the libraries it links (glibc's loader comes with libc6). */
export const VIRTIOFSD_PACKAGES = ["virtiofsd", "libc6", "libseccomp2", "libcap-ng0", "libgcc-s1"] as const;

const VIRTIOFSD_BUNDLE: BundleSpec = {
  ...VIRTIOFSD_KIND,
  suites: VIRTIOFSD_SUITES,
  packages: VIRTIOFSD_PACKAGES,
  program: { package: "virtiofsd", path: "usr/libexec/virtiofsd", name: "virtiofsd" },
  versionArgs: ["--version"],
  versionPattern: /^virtiofsd \d/,
  errorCode: "EVIRTIOFSD",
};

/**
 * Fetches virtiofsd and its libraries from Debian 13 into the cache as a
 * verified tool bundle (provision/provision-bundle.ts) and returns its
 * directory; an intact bundle of the same package versions is kept.
 */
export function provisionVirtiofsd(cache: string, progress: (m: string) => void): Promise<string> {
  return provisionBundle(VIRTIOFSD_BUNDLE, cache, progress);
}
