// A command loads only the code its source and outputs use (issue 14, CLI
// start): a scratch build to cpio must not pay for the registry client, the
// OCI layout writer, the image tools or the boot code. Checked on both forms
// of the CLI, with no timing involved:
//   - the ES module entry (dist/src/cli/main.js): which modules the process loaded;
//   - the installed command, which runs the bundle (main.bundle.cjs): which of
//     the bundled modules' bodies ran, from V8's coverage of the bundle (esbuild
//     wraps each module's body in a function named after its path).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { CLI, CLI_MODULE } from "./helpers/cli.js";
import { compileTestBinary } from "./helpers/static-binary.js";
import { tempDir } from "./helpers/temp-dir.js";

const TRACE = fileURLToPath(new URL("./helpers/trace-modules.js", import.meta.url));
const SRC = pathToFileURL(fileURLToPath(new URL("../src/", import.meta.url))).href;
const BUNDLE = pathToFileURL(fileURLToPath(new URL("../src/cli/main.bundle.cjs", import.meta.url))).href;

/** The modules (paths under dist/src, or node:NAME) a run of the ES module CLI loaded. */
function modulesLoadedBy(args: string[], dir: string): string[] {
  const out = join(dir, "modules.txt");
  const r = spawnSync(process.execPath, ["--import", TRACE, CLI_MODULE, ...args], {
    cwd: dir,
    encoding: "utf8",
    env: { ...process.env, A3S_TRACE_MODULES: out },
  });
  assert.equal(r.status, 0, `a3s-rootfs ${args.join(" ")} failed: ${r.stderr}`);
  const urls = readFileSync(out, "utf8").split("\n").filter((u) => u !== "");
  return [...new Set(urls.map((u) => (u.startsWith(SRC) ? u.slice(SRC.length) : u)))].sort();
}

interface V8Coverage {
  result: { url: string; functions: { functionName: string; ranges: { count: number }[] }[] }[];
}

/** The bundled modules (paths under dist/src) whose bodies ran in a run of the installed command. */
function modulesRunByBundle(args: string[], dir: string): string[] {
  const coverage = join(dir, "coverage");
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: dir,
    encoding: "utf8",
    env: { ...process.env, NODE_V8_COVERAGE: coverage, A3S_CACHE_DIR: join(dir, "cache") },
  });
  assert.equal(r.status, 0, `a3s-rootfs ${args.join(" ")} failed: ${r.stderr}`);
  const ran = new Set<string>();
  let bundleSeen = false;
  for (const f of readdirSync(coverage)) {
    for (const script of (JSON.parse(readFileSync(join(coverage, f), "utf8")) as V8Coverage).result) {
      if (script.url !== BUNDLE) continue;
      bundleSeen = true;
      for (const fn of script.functions) {
        if (fn.functionName.startsWith("dist/src/") && (fn.ranges[0]?.count ?? 0) > 0) ran.add(fn.functionName.slice("dist/src/".length));
      }
    }
  }
  assert.ok(bundleSeen, `V8's coverage has no ${BUNDLE}: the command did not run the bundle`);
  return [...ran].sort();
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

const SCRATCH_CPIO = (agent: string): string[] => ["build", "scratch", "--agent", agent, "-o", "cpio:out.cpio.gz", "--no-cache"];
const SCRATCH_OCI = (agent: string): string[] => ["build", "scratch", "--agent", agent, "-o", "oci:layout", "--no-cache"];
/** Modules a scratch build to cpio does use: the check sees them, so it can see the others. */
const USED_BY_SCRATCH_CPIO = ["cli/build-command.js", "builder/rootfs-builder.js", "formats/newc/writer.js"];
const USED_BY_OCI = ["outputs/oci-layout-output.js", "oci/layout/layout-writer.js", "formats/tar/writer.js"];

for (const [form, modulesOf] of [
  ["the ES module entry (dist/src/cli/main.js)", modulesLoadedBy],
  ["the installed command (the bundle)", modulesRunByBundle],
] as const) {
  describe(`CLI module loading: ${form}`, () => {
    it("build scratch -o cpio:OUT.cpio.gz loads no registry, layout, provisioning, image tool, verity or boot code", () => {
      const loaded = modulesOf(SCRATCH_CPIO(compileTestBinary()), tempDir());
      for (const used of USED_BY_SCRATCH_CPIO) assert.ok(loaded.includes(used), `${used} is not among the loaded modules: ${loaded.join(", ")}`);
      assert.deepEqual(
        loaded.filter((m) => NOT_FOR_SCRATCH_CPIO.some((re) => re.test(m))),
        [],
      );
    });

    it("an output that needs the heavier code loads it: -o oci:DIR loads the layout writer and the tar writer", () => {
      const loaded = modulesOf(SCRATCH_OCI(compileTestBinary()), tempDir());
      for (const used of USED_BY_OCI) assert.ok(loaded.includes(used), `${used} is not among the loaded modules of an oci build`);
    });
  });
}

it("the ES module trace sees node's own modules too: a scratch build to cpio loads node:zlib", () => {
  assert.ok(modulesLoadedBy(SCRATCH_CPIO(compileTestBinary()), tempDir()).includes("node:zlib"));
});
