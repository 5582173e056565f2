import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/**
 * The root of this a3s-rootfs package: node_modules/a3s-rootfs when it is
 * installed, the checkout otherwise. Found relative to this module
 * (dist/src/util/), so it never depends on the working directory.
 *
 * The one use of import.meta.url in src/: every other file the package
 * carries is found from here. The bundled CLI (scripts/bundle-cli.mjs) sets
 * import.meta.url to this module's own dist/src/util/package-root.js URL, and
 * refuses to bundle any other module that reads import.meta.
 */
export function packageRoot(): string {
  return fileURLToPath(new URL("../../../", import.meta.url)).replace(/\/$/, "");
}

/** What a3s-rootfs reads from its own package.json at run time. */
export interface PackageManifest {
  readonly name: string;
  readonly version: string;
  readonly engines?: { readonly node?: string };
}

export function packageManifest(): PackageManifest {
  return JSON.parse(readFileSync(`${packageRoot()}/package.json`, "utf8")) as PackageManifest;
}
