// Bundles the CLI (dist/src/cli/main.js, compiled by tsc) into one CommonJS
// file, dist/src/cli/main.bundle.cjs, which the installed command
// (dist/src/cli/a3s-rootfs.cjs) compiles with a V8 code cache: loading one
// script from a code cache starts faster than resolving and compiling the
// CLI's ~65 ES modules (issue 14, CLI start). The library, dist/src/index.js,
// stays as tsc wrote it; only the command is bundled.
//
// Each command's module stays lazy inside the bundle: esbuild turns
// `await import("./build-command.js")` into a call that runs that module's
// code only then.
//
// import.meta does not exist in CommonJS. The one module that reads it,
// util/package-root.js, locates the package from its own URL; the bundle
// gives it that same URL (dist/src/util/package-root.js next to this bundle's
// dist/src/cli/), and any other module reading import.meta stops the build.
/* global console, process */
import { build } from "esbuild";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const entry = join(root, "dist/src/cli/main.js");
const out = join(root, "dist/src/cli/main.bundle.cjs");
const READS_PACKAGE_URL = "dist/src/util/package-root.js";

const result = await build({
  entryPoints: [entry],
  outfile: out,
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  // Readable: error stacks name the real functions and point at readable lines.
  minify: false,
  legalComments: "inline",
  metafile: true,
  write: false,
  logLevel: "warning",
  define: { "import.meta.url": "__a3sPackageRootModuleUrl" },
  banner: {
    js: [
      "// a3s-rootfs CLI, bundled by scripts/bundle-cli.mjs from dist/src/cli/main.js. Not the library: that is dist/src/index.js.",
      `var __a3sPackageRootModuleUrl = require("node:url").pathToFileURL(require("node:path").join(__dirname, "../util/package-root.js")).href;`,
    ].join("\n"),
  },
});

const offenders = Object.keys(result.metafile.inputs).filter(
  (input) => input !== READS_PACKAGE_URL && readFileSync(join(root, input), "utf8").includes("import.meta"),
);
if (offenders.length > 0) {
  console.error(`bundle-cli: ${offenders.join(", ")} read import.meta, which the bundle cannot give them; locate files through packageRoot() (src/util/package-root.ts) instead`);
  process.exit(1);
}
if (!Object.hasOwn(result.metafile.inputs, READS_PACKAGE_URL)) {
  console.error(`bundle-cli: ${READS_PACKAGE_URL} is not in the bundle; scripts/bundle-cli.mjs must be told where the package root is found now`);
  process.exit(1);
}

// The launcher wraps the bundle in a function, where main.js's `#!` line would
// be a syntax error; the line is kept (as a comment) so line numbers stay.
const [code] = result.outputFiles;
writeFileSync(out, code.text.replace(/^#!.*/, "// Run by dist/src/cli/a3s-rootfs.cjs, not directly."));
