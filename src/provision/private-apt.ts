import { mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { A3sError } from "../errors.js";
import { requireTool, runTool } from "../util/host-tool.js";

/** A Debian suite to fetch from, and the keyring its Release files must be signed with. */
export interface AptSuiteSource {
  /** e.g. "http://deb.debian.org/debian" */
  readonly uri: string;
  /** e.g. "trixie", "trixie-updates" */
  readonly suite: string;
  readonly components: readonly string[];
  /** The keyring apt checks the suite's InRelease signature against (`signed-by`). */
  readonly keyring: string;
}

/** One package as apt resolved it: the candidate version and the SHA256 its signed index lists. */
export interface AptPackage {
  readonly name: string;
  readonly version: string;
  readonly sha256: string;
  readonly filename: string;
}

/**
 * apt with a configuration of its own, rooted in one directory: its own
 * sources list, package lists, dpkg status (empty) and download cache, so
 * fetching from another Debian release never changes the host's apt state
 * (no line in /etc/apt, no list in /var/lib/apt). apt still does what makes
 * the download trustworthy: it checks each suite's InRelease signature
 * against the given keyring and each .deb against the SHA256 in the signed
 * index. The host's apt.conf.d still applies (a proxy lives there), except
 * for the options that would weaken those checks, which are forced off.
 */
export class PrivateApt {
  private constructor(
    private readonly root: string,
    /** For messages: "trixie (http://deb.debian.org/debian), ...". */
    private readonly suites: string,
    private readonly options: readonly string[],
  ) {}

  /** Prepares the directories and the sources list under `root`, which must exist and be empty. */
  static async create(root: string, sources: readonly AptSuiteSource[], arch: string): Promise<PrivateApt> {
    const dirs = ["lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d", "downloads"];
    for (const d of dirs) await mkdir(join(root, d), { recursive: true });
    const list = sources
      .map((s) => `deb [arch=${arch} signed-by=${s.keyring}] ${s.uri} ${s.suite} ${s.components.join(" ")}\n`)
      .join("");
    await writeFile(join(root, "sources.list"), list);
    await writeFile(join(root, "status"), "");
    const options = [
      ["Dir::Etc::SourceList", join(root, "sources.list")],
      ["Dir::Etc::SourceParts", join(root, "sources.list.d")],
      ["Dir::Etc::Preferences", join(root, "preferences")],
      ["Dir::Etc::PreferencesParts", join(root, "preferences.d")],
      ["Dir::State::Lists", join(root, "lists")],
      ["Dir::State::status", join(root, "status")],
      ["Dir::Cache", join(root, "cache")],
      ["APT::Architecture", arch],
      ["APT::Architectures", arch],
      ["Acquire::Languages", "none"],
      ["Acquire::AllowInsecureRepositories", "false"],
      ["Acquire::AllowDowngradeToInsecureRepositories", "false"],
      ["Acquire::AllowWeakRepositories", "false"],
      ["Acquire::Check-Valid-Until", "true"],
      ["APT::Get::AllowUnauthenticated", "false"],
      // The downloads go to a directory only this process's user can write,
      // which apt's unprivileged "_apt" download user cannot reach when we
      // are root; apt would say so on every file. The checks are the same.
      ["APT::Sandbox::User", process.getuid?.() === 0 ? "root" : ""],
    ]
      .filter(([, v]) => v !== "")
      .flatMap(([k, v]) => ["-o", `${k}=${v}`]);
    return new PrivateApt(root, sources.map((s) => `${s.suite} (${s.uri})`).join(", "), options);
  }

  /**
   * Downloads and verifies the suites' package lists. `--error-on=any`: by
   * default apt-get update exits 0 when a list could not be fetched, and
   * the failure would only show later as a package that does not exist.
   */
  async update(): Promise<void> {
    await runTool(requireTool("apt-get", "apt"), [...this.options, "-q", "--error-on=any", "update"]).catch((e: Error) => {
      // apt's own "E:" lines say what failed; the command line is all temporary paths.
      const why = e.message.split("\n").filter((l) => /^E: /.test(l)).map((l) => l.slice(3).trim()).join("; ") || e.message;
      throw new A3sError("EAPT", `cannot read the package lists of ${this.suites}: ${why}`, {
        hint: "check that deb.debian.org is reachable (a proxy for apt goes in /etc/apt/apt.conf.d)",
        cause: e,
      });
    });
  }

  /** The candidate version of each package, with the SHA256 its signed index lists. */
  async resolve(names: readonly string[]): Promise<AptPackage[]> {
    const aptCache = requireTool("apt-cache", "apt");
    const out: AptPackage[] = [];
    for (const name of names) {
      const show = (await runTool(aptCache, [...this.options, "show", "--no-all-versions", name]).catch(() => undefined))?.stdout ?? "";
      const field = (f: string): string | undefined => new RegExp(`^${f}: (\\S+)$`, "m").exec(show)?.[1];
      const version = field("Version");
      const sha256 = field("SHA256");
      const filename = field("Filename");
      if (!version || !sha256 || !filename) {
        throw new A3sError("EAPT", `apt found no package ${name} in ${this.suites}`, { subject: name });
      }
      out.push({ name, version, sha256, filename });
    }
    return out;
  }

  /** Downloads exactly these versions into the downloads directory; returns the path of each .deb by package name. */
  async download(packages: readonly AptPackage[]): Promise<Map<string, string>> {
    const dir = join(this.root, "downloads");
    await runTool(requireTool("apt-get", "apt"), [...this.options, "-q", "download", ...packages.map((p) => `${p.name}=${p.version}`)], {
      cwd: dir,
    });
    const files = await readdir(dir);
    const found = new Map<string, string>();
    for (const p of packages) {
      const deb = files.find((f) => f.startsWith(`${p.name}_`) && f.endsWith(".deb"));
      if (!deb) throw new A3sError("EAPT", `apt-get download left no .deb for ${p.name} ${p.version}`, { subject: p.name });
      found.set(p.name, join(dir, deb));
    }
    return found;
  }
}
