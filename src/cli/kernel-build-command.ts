import type { Command } from "commander";
import { DEFAULT_SOURCE_PACKAGE } from "../boot/kernel-source.js";
import { buildMicrovmKernel } from "../boot/microvm-kernel-build.js";
import { A3sError } from "../errors.js";
import { action } from "./command-runner.js";
import { humanBytes } from "./format.js";

interface BuildFlags {
  jobs?: string;
  sourcePackage?: string;
  json?: boolean;
  quiet?: boolean;
}

/** `a3s-rootfs kernel build`: builds (or finds cached) the microVM kernel. */
export function registerKernelBuildCommand(kernel: Command): void {
  kernel
    .command("build")
    .description("build the microVM kernel from Debian's linux-source and kernel/config/*.config (cached: a second build returns at once)")
    .option("--jobs <N>", "parallel compile jobs (default: the number of CPUs)")
    .option("--source-package <PKG>", "Debian's kernel source package", DEFAULT_SOURCE_PACKAGE)
    .option("-q, --quiet", "no progress on stderr")
    .option("--json", "print {path, version, configHash, bytes, durationMs}")
    .addHelpText(
      "after",
      "\nThe source is fetched with apt-get download (apt checks it against the archive's signed index),\n" +
        "every driver the guest needs is built in (no modules), and the result is cached per source version\n" +
        "and config hash under the cache directory's kernels/. Building takes minutes and about 4 GiB of\n" +
        "disk; it needs make, gcc, flex, bison, bc and libelf-dev. After it, `a3s-rootfs run` boots this\n" +
        "kernel unless --kernel says otherwise. See docs/boot.md.",
    )
    .action(
      action(async ({ signal }, flags: BuildFlags) => {
        let jobs: number | undefined;
        if (flags.jobs !== undefined) {
          jobs = Number(flags.jobs);
          if (!Number.isInteger(jobs) || jobs < 1) throw new A3sError("EUSAGE", `--jobs must be a whole number of at least 1, got ${JSON.stringify(flags.jobs)}`);
        }
        const quiet = flags.quiet || flags.json;
        const meter = new StepMeter(process.stderr, quiet ?? false);
        // Removing the source tree takes a while; say why nothing seems to happen.
        const onAbort = (): void => meter.say("interrupted: stopping make and removing the build directory");
        signal.addEventListener("abort", onAbort, { once: true });
        try {
          const r = await buildMicrovmKernel({
            ...(jobs ? { jobs } : {}),
            ...(flags.sourcePackage ? { sourcePackage: flags.sourcePackage } : {}),
            progress: (m) => meter.say(m),
            onStep: (done, expected) => meter.step(done, expected),
            signal,
          });
          meter.done();
          const k = r.kernel;
          if (flags.json) {
            process.stdout.write(
              JSON.stringify({ path: k.path, version: k.release, configHash: k.configHash, bytes: k.bytes, durationMs: r.durationMs, cached: r.cached, origin: k.origin }) + "\n",
            );
            return;
          }
          process.stdout.write(
            `${r.cached ? "cached" : "built"}: ${k.path}\n` +
              `version: ${k.release} (${k.sourcePackage} ${k.sourceVersion})\n` +
              `config:  ${k.configHash.slice(0, 16)} (${k.fragments.length} fragments)\n` +
              `size:    ${humanBytes(k.bytes)}\n` +
              `time:    ${(r.durationMs / 1000).toFixed(1)} s${r.cached ? "" : ` (${k.buildSteps} build steps)`}\n`,
          );
        } catch (e) {
          meter.done();
          // The command runner exits 128+N for the signal once this returns.
          if (signal.aborted) process.stderr.write("a3s-rootfs: the kernel build was interrupted; nothing was published\n");
          throw e;
        } finally {
          signal.removeEventListener("abort", onAbort);
        }
      }),
    );
}

/**
 * Progress of a build that takes minutes. On a terminal: one line redrawn
 * in place with steps done, the expected total and the time so far. Not on
 * a terminal (CI logs): a line each tenth of the way.
 */
class StepMeter {
  private readonly started = Date.now();
  private lastDraw = 0;
  private lastTenth = -1;
  private drawn = false;

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly quiet: boolean,
  ) {}

  say(message: string): void {
    if (this.quiet) return;
    this.clear();
    this.out.write(`a3s-rootfs: ${message}\n`);
  }

  step(done: number, expected: number): void {
    if (this.quiet) return;
    // The estimate comes from the last build; never show more than 99% before the end.
    const pct = Math.min(99, Math.floor((done / expected) * 100));
    const text = `a3s-rootfs: compiling: ${done}/~${expected} steps (${pct}%), ${this.elapsed()}`;
    if (this.out.isTTY) {
      const now = Date.now();
      if (now - this.lastDraw < 200) return;
      this.lastDraw = now;
      this.out.write(`\r\x1b[K${text.slice(0, (this.out.columns || 80) - 1)}`);
      this.drawn = true;
    } else if (Math.floor(pct / 10) > this.lastTenth) {
      this.lastTenth = Math.floor(pct / 10);
      this.out.write(`${text}\n`);
    }
  }

  done(): void {
    this.clear();
  }

  private clear(): void {
    if (this.drawn) this.out.write("\r\x1b[K");
    this.drawn = false;
  }

  private elapsed(): string {
    const s = Math.floor((Date.now() - this.started) / 1000);
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")} elapsed`;
  }
}
