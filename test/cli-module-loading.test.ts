// A command loads only the code its source and outputs use (issue 14, CLI
// start): a scratch build to cpio must not pay for the registry client, the
// OCI layout writer, the image tools or the boot code. The check reads which
// modules a real CLI process loaded; no timing is involved.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { CLI } from "./helpers/cli.js";
import { compileTestBinary } from "./helpers/static-binary.js";
import { tempDir } from "./helpers/temp-dir.js";

const TRACE = fileURLToPath(new URL("./helpers/trace-modules.js", import.meta.url));
const SRC = pathToFileURL(fileURLToPath(new URL("../src/", import.meta.url))).href;

/** The modules (paths under dist/src, or node:NAME) a CLI run loaded. */
function modulesLoadedBy(args: string[], dir: string): string[] {
  const out = join(dir, "modules.txt");
  const r = spawnSync(process.execPath, ["--import", TRACE, CLI, ...args], {
    cwd: dir,
    encoding: "utf8",
    env: { ...process.env, A3S_TRACE_MODULES: out },
  });
  assert.equal(r.status, 0, `a3s-rootfs ${args.join(" ")} failed: ${r.stderr}`);
  const urls = readFileSync(out, "utf8").split("\n").filter((u) => u !== "");
  return [...new Set(urls.map((u) => (u.startsWith(SRC) ? u.slice(SRC.length) : u)))].sort();
}

/** Code a scratch build to cpio never runs: loading it only slows the start. */
const NOT_FOR_SCRATCH_CPIO: readonly RegExp[] = [
  // The registry client and push; credentials.js is not among them: it parses --creds
  // when the command line is read, and loads nothing of the client.
  /^oci\/registry\/(?!credentials\.js$)/,
  /^oci\/layout\//, // OCI layout reading and writing
  /^oci\/store\//, // the content store
  /^outputs\/(registry-output|oci-layout-output|oci-image|image-tool-choice)\.js$/,
  /^provision\//, // provisioning of image tools and kernels
  /^boot\//, // kernels, QEMU, virtiofsd
  /^audit\//,
  /^formats\/(tar|erofs|squashfs|ext4|image|dir\/(?!sidecar))/, // other formats' writers
  /^formats\/verity\/(writer|hash-tree|reader|superblock|locate)\.js$/, // the verity writer and reader
  /^node:(http|https|worker_threads)$/,
];

describe("CLI module loading", () => {
  it("build scratch -o cpio:OUT.cpio.gz loads no registry, layout, provisioning, image tool, verity or boot code", () => {
    const dir = tempDir();
    const loaded = modulesLoadedBy(["build", "scratch", "--agent", compileTestBinary(), "-o", "cpio:out.cpio.gz", "--no-cache"], dir);
    // The trace works: the modules this build does use are in it.
    for (const used of ["cli/build-command.js", "builder/rootfs-builder.js", "formats/newc/writer.js", "node:zlib"]) {
      assert.ok(loaded.includes(used), `${used} is not among the loaded modules: ${loaded.join(", ")}`);
    }
    assert.deepEqual(
      loaded.filter((m) => NOT_FOR_SCRATCH_CPIO.some((re) => re.test(m))),
      [],
    );
  });

  it("an output that needs the heavier code loads it: -o oci:DIR loads the layout writer and the tar writer", () => {
    const dir = tempDir();
    const loaded = modulesLoadedBy(["build", "scratch", "--agent", compileTestBinary(), "-o", "oci:layout", "--no-cache"], dir);
    for (const used of ["outputs/oci-layout-output.js", "oci/layout/layout-writer.js", "formats/tar/writer.js"]) {
      assert.ok(loaded.includes(used), `${used} is not among the loaded modules of an oci build`);
    }
  });
});
