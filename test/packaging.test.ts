// The npm package on its own: packed from a copy of the checkout (as a clean
// clone would be), installed from the tarball into an empty directory, and
// used from there: the CLI through npx, one boot, and the library through
// `import { RootfsBuilder } from "a3s-rootfs"`, types included. Every check
// that something came from the package asserts the path it came from.
import assert from "node:assert/strict";
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import { before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { tempDir } from "./helpers/temp-dir.js";

const repo = realpathSync(fileURLToPath(new URL("../..", import.meta.url)));
/** The packed tarball's limit (packed bytes): the target. */
const PACKED_LIMIT = 1024 * 1024;

interface PackReport {
  filename: string;
  size: number;
  unpackedSize: number;
  files: { path: string; size: number }[];
}

function run(file: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): SpawnSyncReturns<string> {
  return spawnSync(file, args, { cwd, env, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
}

function ok(r: SpawnSyncReturns<string>, what: string): string {
  assert.equal(r.status, 0, `${what} exited with ${r.status}:\n${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

/** The environment the installed package runs in: nothing on PATH or NODE_PATH leads into the checkout. */
function outsideEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    // `npm test` exports its own package's settings; the app is another package.
    if (k.startsWith("npm_") || k === "NODE_PATH" || k === "INIT_CWD") continue;
    env[k] = v;
  }
  env.PATH = (process.env.PATH ?? "")
    .split(delimiter)
    .filter((d) => d && !d.startsWith(repo))
    .join(delimiter);
  return env;
}

/** Copies the files a clean clone has (tracked, plus new ones git does not ignore) into `dest`. */
function copyCheckout(dest: string): number {
  const listed = ok(run("git", ["ls-files", "-z", "-c", "-o", "--exclude-standard"], repo, process.env), "git ls-files");
  const files = [...new Set(listed.split("\0").filter(Boolean))].filter((f) => existsSync(join(repo, f)));
  for (const f of files) cpSync(join(repo, f), join(dest, f), { recursive: false });
  return files.length;
}

describe("the npm package, installed from its tarball into an empty directory", () => {
  const work = tempDir("a3s-package-");
  const source = join(work, "checkout");
  const app = join(work, "app");
  const env = outsideEnv();
  let pack: PackReport;
  let installed: string;
  let sums: Map<string, string>;
  /** What the run saw, printed with the first test (the report quotes it). */
  const notes: string[] = [];

  const npx = (args: string[]): SpawnSyncReturns<string> => run("npx", ["--no", "--", "a3s-rootfs", ...args], app, env);

  before(() => {
    mkdirSync(source);
    const copied = copyCheckout(source);
    // The copy builds with the checkout's dev tools (tsc); the package itself never sees them.
    symlinkSync(join(repo, "node_modules"), join(source, "node_modules"));
    const packed = run("npm", ["pack", "--json", "--pack-destination", work], source, env);
    pack = (JSON.parse(ok(packed, "npm pack")) as PackReport[])[0] as PackReport;
    notes.push(`packed ${copied} files of the checkout into ${pack.filename}: ${pack.size} bytes packed, ${pack.unpackedSize} unpacked, ${pack.files.length} files`);

    mkdirSync(app);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
    ok(run("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error", join(work, pack.filename)], app, env), "npm install");
    installed = realpathSync(join(app, "node_modules", "a3s-rootfs"));
    sums = new Map(
      readFileSync(join(installed, "guest/build/SHA256SUMS"), "utf8")
        .trim()
        .split("\n")
        .map((l) => {
          const [hash, name] = l.split(/ +/) as [string, string];
          return [name, hash];
        }),
    );
  });

  it("is small, and carries the built guest programs, their checksums, types, kernel fragments and docs, but no tests", (t) => {
    for (const n of notes) t.diagnostic(n);
    const paths = pack.files.map((f) => f.path);
    assert.ok(pack.size <= PACKED_LIMIT, `${pack.size} bytes packed, over ${PACKED_LIMIT}`);
    for (const p of ["guest/build/init", "guest/build/probe", "guest/build/config-check", "guest/build/thp-off", "guest/build/SHA256SUMS", "guest/init.c", "guest/Makefile",
      "dist/src/index.js", "dist/src/index.d.ts", "dist/src/cli/main.js", "dist/src/cli/a3s-rootfs.cjs", "dist/src/cli/main.bundle.cjs",
      "dist/src/formats/dir/write-worker.js", "kernel/config/base.config", "docs/api.md", "README.md", "CHANGELOG.md", "package.json"]) {
      assert.ok(paths.includes(p), `${p} is not in the package`);
    }
    assert.deepEqual(paths.filter((p) => /^(test|bench|scripts|dist\/test|dist\/bench|src)\//.test(p) || p.endsWith(".map")), []);
  });

  it("builds its guest programs reproducibly: the checkout's sources built again elsewhere give the same bytes", () => {
    const again = join(work, "guest-again");
    ok(run("make", ["-s", "-C", join(repo, "guest"), "CC=musl-gcc", `BUILD=${again}`], repo, env), "make -C guest");
    assert.equal(readFileSync(join(again, "SHA256SUMS"), "utf8"), readFileSync(join(installed, "guest/build/SHA256SUMS"), "utf8"));
  });

  it("installs its dependencies only, none of the dev tools", () => {
    const modules = readdirSync(join(app, "node_modules")).filter((n) => !n.startsWith("."));
    const manifest = JSON.parse(readFileSync(join(installed, "package.json"), "utf8")) as { dependencies: Record<string, string> };
    assert.deepEqual(modules.sort(), ["a3s-rootfs", ...Object.keys(manifest.dependencies)].sort());
  });

  it("--version prints the package's version", () => {
    const version = (JSON.parse(readFileSync(join(installed, "package.json"), "utf8")) as { version: string }).version;
    assert.equal(ok(npx(["--version"]), "--version").trim(), version);
  });

  it("its command is the launcher of the bundled CLI, which runs from the package alone", () => {
    assert.equal(realpathSync(join(app, "node_modules", ".bin", "a3s-rootfs")), join(installed, "dist/src/cli/a3s-rootfs.cjs"));
    const cache = join(work, "code-cache-root");
    assert.match(ok(run("npx", ["--no", "--", "a3s-rootfs", "--help"], app, { ...env, A3S_CACHE_DIR: cache }), "--help"), /Usage: a3s-rootfs/);
    assert.equal(readdirSync(join(cache, "cli-code-cache")).length, 1, "the installed command wrote no code cache");
  });

  it("doctor --json: the host is ready, and the guest programs are the package's, verified", (t) => {
    const r = npx(["doctor", "--json"]);
    const report = JSON.parse(r.stdout) as {
      ok: boolean;
      packageRoot: string;
      groups: string[];
      checks: { id: string; status: string; path: string | null; detail: string | null }[];
    };
    assert.equal(r.status, report.ok ? 0 : 1);
    const failed = report.checks.filter((c) => c.status === "fail");
    assert.deepEqual(failed, [], "checks failed");
    assert.equal(report.packageRoot, installed);
    assert.ok(!report.groups.includes("guest-build"), "an installed package builds no guest programs");
    const guest = report.checks.find((c) => c.id === "guest-programs");
    assert.equal(guest?.status, "ok");
    assert.equal(guest?.path, join(installed, "guest/build"));
    assert.match(guest?.detail ?? "", new RegExp(`carried by the package; match ${join(installed, "guest/build/SHA256SUMS")}`));
    const summary = report.checks.map((c) => `${c.id}=${c.status}`).join(" ");
    t.diagnostic(`doctor: ok=${report.ok} ${summary}`);
  });

  it("builds a scratch rootfs to cpio.gz and erofs with the package's init, and boots the erofs image", (t) => {
    const probe = join(installed, "guest/build/probe");
    const built = JSON.parse(ok(npx(["build", "--agent", probe, "-o", "cpio:rootfs.cpio.gz", "-o", "erofs:rootfs.erofs", "--json"]), "build")) as {
      outputs: { format: string; path: string; bytes: number }[];
    };
    assert.deepEqual(built.outputs.map((o) => [o.format, o.path]), [["cpio", join(app, "rootfs.cpio.gz")], ["erofs", join(app, "rootfs.erofs")]]);
    for (const image of ["rootfs.cpio.gz", "rootfs.erofs"]) {
      const listing = JSON.parse(ok(npx(["inspect", "--list", "--json", image]), `inspect ${image}`)) as { list: { path: string; sha256?: string }[] };
      assert.equal(listing.list.find((e) => e.path === "/sbin/init")?.sha256, sums.get("init"), `${image}'s /sbin/init is the package's init`);
    }

    const run = JSON.parse(ok(npx(["run", "rootfs.erofs", "--timeout", "120", "--json"]), "run")) as { exitCode: number; stdout: string; kernel: string; accel: string };
    assert.equal(run.exitCode, 0);
    const seen = JSON.parse(run.stdout) as { probe: number; hostname: string; pid: number };
    assert.equal(seen.probe, 1);
    assert.equal(seen.hostname, "a3s-box");
    t.diagnostic(`booted rootfs.erofs: kernel ${run.kernel}, ${run.accel}, agent exit ${run.exitCode}, probe pid ${seen.pid}`);
  });

  it("is a library: a script imports RootfsBuilder from a3s-rootfs and builds with the package's init", () => {
    writeFileSync(
      join(app, "use-library.js"),
      [
        'import { createHash } from "node:crypto";',
        'import { guestProgramPath, readContent, RootfsBuilder } from "a3s-rootfs";',
        'const tree = await new RootfsBuilder().withAgentBinary(guestProgramPath("probe")).buildTree();',
        'const init = await readContent(tree.lookup("/sbin/init").content, "/sbin/init");',
        'const sha256 = createHash("sha256").update(init).digest("hex");',
        'console.log(JSON.stringify({ resolved: import.meta.resolve("a3s-rootfs"), probe: guestProgramPath("probe"), sha256 }));',
      ].join("\n"),
    );
    const out = JSON.parse(ok(run(process.execPath, ["use-library.js"], app, env), "use-library.js")) as { resolved: string; probe: string; sha256: string };
    assert.equal(realpathSync(fileURLToPath(out.resolved)), join(installed, "dist/src/index.js"));
    assert.equal(out.probe, join(installed, "guest/build/probe"));
    assert.equal(out.sha256, sums.get("init"));
  });

  it("ships types: a TypeScript consumer type-checks against the installed declarations", () => {
    const file = join(app, "consumer.ts");
    writeFileSync(
      file,
      [
        'import { RootfsBuilder, runRootfs, type BuildResult, type RunResult } from "a3s-rootfs";',
        'const result: BuildResult = await new RootfsBuilder().withOutput("cpio", "rootfs.cpio.gz").build();',
        "const entries: number = result.entries;",
        'const run: RunResult = await runRootfs({ image: "rootfs.cpio.gz", timeoutS: 10 });',
        "// @ts-expect-error: the declarations are strict enough to reject a wrong type",
        "const wrong: string = run.exitCode;",
        "export { entries, wrong };",
      ].join("\n"),
    );
    const options: ts.CompilerOptions = {
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      strict: true,
      noEmit: true,
      // The consumer's own @types/node: the checkout's, the one dev tool used here besides the compiler.
      types: ["node"],
      typeRoots: [join(repo, "node_modules/@types")],
    };
    const resolved = ts.resolveModuleName("a3s-rootfs", file, options, ts.sys).resolvedModule;
    assert.equal(resolved?.resolvedFileName && realpathSync(resolved.resolvedFileName), join(installed, "dist/src/index.d.ts"));
    const program = ts.createProgram([file], options);
    const problems = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
    assert.deepEqual(problems, []);
  });

  it("refuses a guest program that does not match its checksum, naming the file", () => {
    const init = join(installed, "guest/build/init");
    const bytes = readFileSync(init);
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 0xff, bytes.length - 1);
    writeFileSync(init, bytes);
    const r = npx(["build", "--agent", join(installed, "guest/build/probe"), "-o", "tar:t.tar"]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`the guest program ${init} does not match its checksum in ${join(installed, "guest/build/SHA256SUMS")}`));
    assert.match(r.stderr, /reinstall a3s-rootfs/);
    assert.ok(!existsSync(join(app, "t.tar")));
    const doctor = npx(["doctor", "--json"]);
    assert.equal(doctor.status, 1);
    assert.equal((JSON.parse(doctor.stdout) as { checks: { id: string; status: string }[] }).checks.find((c) => c.id === "guest-programs")?.status, "fail");
  });
});
