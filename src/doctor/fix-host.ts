import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { debianKernel } from "../boot/debian-kernel.js";
import { buildMicrovmKernel } from "../boot/microvm-kernel-build.js";
import { provisionVirtiofsd } from "../boot/virtiofsd-provision.js";
import { A3sError } from "../errors.js";
import { runTool } from "../util/host-tool.js";
import type { HostFix, HostReport } from "./check-host.js";
import type { HostSystem } from "./host-system.js";

/** What a fix step does. */
export type FixAction =
  | { readonly kind: "apt-source"; readonly suite: "bookworm-backports" }
  | { readonly kind: "apt-update" }
  | { readonly kind: "apt-install"; readonly packages: readonly string[]; readonly suite?: string }
  | { readonly kind: "make-guest"; readonly dir: string }
  | { readonly kind: "virtiofsd-fetch" }
  | { readonly kind: "kernel-fetch" }
  | { readonly kind: "kernel-build" };

/** One step of a fix: what it does, the command a person would type for it, and whether that needs root. */
export interface FixStep {
  readonly action: FixAction;
  /** Exactly what to run, e.g. "apt-get install -y --no-install-recommends zstd". */
  readonly command: string;
  /** apt steps: they need root on Debian or Ubuntu. The others run as anyone, anywhere the doctor runs. */
  readonly root: boolean;
}

const BACKPORTS_LIST = "/etc/apt/sources.list.d/a3s-bookworm-backports.list";
const BACKPORTS_LINE = "deb http://deb.debian.org/debian bookworm-backports main";
const APT_INSTALL = ["install", "-y", "-qq", "--no-install-recommends"];

const A3S_STEPS: Readonly<Record<string, FixStep>> = {
  "virtiofsd --fetch": { action: { kind: "virtiofsd-fetch" }, command: "a3s-rootfs virtiofsd --fetch", root: false },
  "kernel --fetch": { action: { kind: "kernel-fetch" }, command: "a3s-rootfs kernel --fetch", root: false },
  "kernel build": { action: { kind: "kernel-build" }, command: "a3s-rootfs kernel build", root: false },
};

/**
 * The steps that fix every check of `report` that has a fix, in the order
 * they must run: Debian packages first (one apt-get install for the release,
 * one for bookworm-backports, its source added when missing), then the guest
 * programs, then what a3s-rootfs provisions into the cache (virtiofsd, the
 * kernels), which needs the packages.
 */
export function planFixes(report: Pick<HostReport, "checks">, opts: { hasAptSource?: (suite: string) => boolean } = {}): FixStep[] {
  const sourceConfigured = opts.hasAptSource ?? hasAptSource;
  const fixes = report.checks.filter((c) => c.status !== "ok" && c.fix !== null).map((c) => c.fix as HostFix);
  const fromRelease = unique(fixes.flatMap((f) => (f.kind === "apt" && !f.suite ? [f.debianPackage] : [])));
  const fromSuite = new Map<string, string[]>();
  for (const f of fixes) if (f.kind === "apt" && f.suite) fromSuite.set(f.suite, unique([...(fromSuite.get(f.suite) ?? []), f.debianPackage]));

  const steps: FixStep[] = [];
  if (fromSuite.has("bookworm-backports") && !sourceConfigured("bookworm-backports")) {
    steps.push({ action: { kind: "apt-source", suite: "bookworm-backports" }, command: `echo '${BACKPORTS_LINE}' > ${BACKPORTS_LIST}`, root: true });
  }
  if (fromRelease.length > 0 || fromSuite.size > 0) steps.push({ action: { kind: "apt-update" }, command: "apt-get update", root: true });
  if (fromRelease.length > 0) {
    steps.push({ action: { kind: "apt-install", packages: fromRelease }, command: `apt-get ${APT_INSTALL.join(" ")} ${fromRelease.join(" ")}`, root: true });
  }
  for (const [suite, packages] of fromSuite) {
    steps.push({ action: { kind: "apt-install", packages, suite }, command: `apt-get ${APT_INSTALL.join(" ")} -t ${suite} ${packages.join(" ")}`, root: true });
  }
  for (const f of fixes) if (f.kind === "make-guest") steps.push({ action: { kind: "make-guest", dir: f.dir }, command: `make -C ${f.dir}`, root: false });
  // virtiofsd before the kernels: it takes seconds, a kernel build minutes.
  const a3s = new Set(fixes.flatMap((f) => (f.kind === "a3s" ? [f.args.join(" ")] : [])));
  for (const [args, step] of Object.entries(A3S_STEPS)) if (a3s.has(args)) steps.push(step);
  return steps;
}

/** Whether `applyFixes` may run a step here: apt steps only as root on Debian or Ubuntu. */
export function runnableHere(step: FixStep, system: HostSystem): boolean {
  return !step.root || (system.root && system.debianLike);
}

/** Runs the steps in order and stops at the first that fails; its error says which. */
export async function applyFixes(
  steps: readonly FixStep[],
  opts: { cacheDir: string; progress: (m: string) => void; signal?: AbortSignal },
): Promise<void> {
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const failed = (step: FixStep) => (e: Error) => {
    throw new A3sError("ETOOL", `${step.command} failed: ${e.message}`, { subject: step.command, hint: "run it by hand to see all of its output" });
  };
  for (const step of steps) {
    opts.progress(step.command);
    const a = step.action;
    switch (a.kind) {
      case "apt-source":
        writeFileSync(BACKPORTS_LIST, `${BACKPORTS_LINE}\n`);
        break;
      case "apt-update":
        // One broken extra source must not stop the packages every other source has: a package
        // that then cannot be found fails its install, naming it.
        await runTool("apt-get", ["update", "-qq"], { env, signal: opts.signal }).catch((e: Error) =>
          opts.progress(`apt-get update reported errors; going on: ${e.message.split("\n").slice(-2).join(" ")}`),
        );
        break;
      case "apt-install":
        await runTool("apt-get", [...APT_INSTALL, ...(a.suite ? ["-t", a.suite] : []), ...a.packages], { env, signal: opts.signal }).catch(failed(step));
        break;
      case "make-guest":
        await runTool("make", ["-C", a.dir], { env, signal: opts.signal }).catch(failed(step));
        break;
      case "virtiofsd-fetch":
        await provisionVirtiofsd(opts.cacheDir, opts.progress);
        break;
      case "kernel-fetch":
        await debianKernel({ cacheDir: opts.cacheDir, progress: opts.progress });
        break;
      case "kernel-build":
        await buildMicrovmKernel({ cacheDir: opts.cacheDir, progress: opts.progress, ...(opts.signal ? { signal: opts.signal } : {}) });
        break;
    }
  }
}

/** Whether an apt source (a one-line .list or a deb822 .sources file) already names `suite`. */
function hasAptSource(suite: string): boolean {
  const files = ["/etc/apt/sources.list"];
  try {
    for (const name of readdirSync("/etc/apt/sources.list.d")) files.push(join("/etc/apt/sources.list.d", name));
  } catch {
    // no sources.list.d
  }
  return files.some((f) => {
    try {
      return readFileSync(f, "utf8").split("\n").some((l) => !l.trimStart().startsWith("#") && l.includes(suite));
    } catch {
      return false;
    }
  });
}

function unique(items: readonly string[]): string[] {
  return [...new Set(items)];
}
