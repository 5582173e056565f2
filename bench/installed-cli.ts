// The command a user runs after `npm install -g a3s-rootfs` (package.json
// "bin"): the bundled CLI, compiled with its V8 code cache. Benches time
// this, not dist/src/cli/main.js, which loads some forty modules one by one
// (about 30 ms more per run on this machine).
import { fileURLToPath } from "node:url";

export const INSTALLED_CLI = fileURLToPath(new URL("../src/cli/a3s-rootfs.cjs", import.meta.url));
