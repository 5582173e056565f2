import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { A3sError } from "../errors.js";
import { packageRoot } from "../util/package-root.js";
import type { KernelPatch } from "./kernel-patches.js";

/**
 * The microVM kernel's configuration as the repository keeps it: small
 * fragments in kernel/config/*.config, one per capability, each option with
 * a comment saying why it is there. They are merged onto `make allnoconfig`;
 * this module reads, merges and hashes them, and checks a finished .config
 * against them.
 */

/** One option a fragment asks for: "y", "n" (from "# CONFIG_X is not set"), a number, or a quoted string as written. */
export interface ConfigSetting {
  readonly name: string;
  readonly value: string;
  /** The fragment file and line, for messages. */
  readonly from: string;
}

export interface ConfigFragment {
  /** The file name, e.g. "virtio.config". */
  readonly name: string;
  readonly settings: readonly ConfigSetting[];
}

/** The fragments merged: every option once, sorted by name. */
export interface MergedConfig {
  readonly fragments: readonly string[];
  readonly settings: readonly ConfigSetting[];
}

/** The directory of the fragments shipped with this package (under the package root, so it works installed and from the bundled CLI too). */
export function kernelConfigDir(): string {
  return `${packageRoot()}/kernel/config/`;
}

const SET = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/;
const UNSET = /^# (CONFIG_[A-Za-z0-9_]+) is not set$/;

/**
 * Parses a fragment. Lines are a setting (`CONFIG_X=y`, `CONFIG_X="s"`,
 * `CONFIG_X=64`), an unsetting (`# CONFIG_X is not set`), a comment or
 * blank. Anything else, `=m` (there are no modules) and an option set twice
 * in one fragment are errors naming the line.
 */
export function parseFragment(name: string, text: string): ConfigFragment {
  const settings: ConfigSetting[] = [];
  const seen = new Set<string>();
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    const from = `${name}:${i + 1}`;
    const set = SET.exec(line);
    const unset = UNSET.exec(line);
    let setting: ConfigSetting | undefined;
    if (set) setting = { name: set[1] as string, value: set[2] as string, from };
    else if (unset) setting = { name: unset[1] as string, value: "n", from };
    else if (line === "" || line.startsWith("#")) return;
    else throw new A3sError("EKCONFIG", `${from}: not a kernel config line: ${JSON.stringify(raw)}`, { subject: from });
    if (setting.value === "m") {
      throw new A3sError("EKCONFIG", `${from}: ${setting.name}=m asks for a module; the microVM kernel builds everything in`, {
        subject: from,
        hint: "use =y",
      });
    }
    if (!/^(y|n|-?\d+|0x[0-9a-fA-F]+|"([^"\\]|\\.)*")$/.test(setting.value)) {
      throw new A3sError("EKCONFIG", `${from}: ${setting.name} has a value Kconfig does not accept: ${setting.value}`, { subject: from });
    }
    if (seen.has(setting.name)) throw new A3sError("EKCONFIG", `${from}: ${setting.name} is set twice in ${name}`, { subject: from });
    seen.add(setting.name);
    settings.push(setting);
  });
  return { name, settings };
}

/**
 * Merges fragments. Each capability owns its options, so two fragments
 * asking for different values of one option is a mistake, reported with
 * both places; the same value twice is fine (two capabilities needing one
 * option). The result does not depend on the fragments' order.
 */
export function mergeFragments(fragments: readonly ConfigFragment[]): MergedConfig {
  const byName = new Map<string, ConfigSetting>();
  // By file name, so an option two fragments share is credited to the same one whatever the order.
  const sorted = [...fragments].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const f of sorted) {
    for (const s of f.settings) {
      const prev = byName.get(s.name);
      if (prev && prev.value !== s.value) {
        throw new A3sError("EKCONFIG", `${s.name} is ${prev.value} in ${prev.from} but ${s.value} in ${s.from}`, {
          subject: s.from,
          hint: "one fragment should own the option",
        });
      }
      if (!prev) byName.set(s.name, s);
    }
  }
  const settings = [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { fragments: sorted.map((f) => f.name), settings };
}

/** Reads and merges every *.config in `dir` (default: the shipped fragments). */
export async function loadKernelConfig(dir: string = kernelConfigDir()): Promise<MergedConfig> {
  const names = (await readdir(dir).catch((e: NodeJS.ErrnoException) => {
    throw new A3sError("EKCONFIG", `cannot read the kernel config fragments in ${dir}: ${e.message}`, { subject: dir });
  }))
    .filter((n) => n.endsWith(".config"))
    .sort();
  if (names.length === 0) throw new A3sError("EKCONFIG", `there are no kernel config fragments (*.config) in ${dir}`, { subject: dir });
  const fragments = await Promise.all(names.map(async (n) => parseFragment(n, await readFile(join(dir, n), "utf8"))));
  return mergeFragments(fragments);
}

/** The merged fragments as one kconfig file, the input to merge_config.sh: what is hashed is what is built. */
export function renderMergedConfig(merged: MergedConfig): string {
  const lines = merged.settings.map((s) => (s.value === "n" ? `# ${s.name} is not set` : `${s.name}=${s.value}`));
  return `# merged from ${merged.fragments.map((f) => basename(f)).join(" ")}\n${lines.join("\n")}\n`;
}

/**
 * How the kernel is built from source and config, as part of the cache key:
 * change it when a change to the build (make target, base config, KBUILD_*
 * values) changes the kernel, so no kernel built the old way is used.
 */
export const KERNEL_BUILD_RECIPE = "a3s-microvm-kernel/1 allnoconfig+fragments vmlinux";

/**
 * The config hash: sha256 of the recipe, the merged settings and the source
 * patches (none: the hash of the settings alone). Comments,
 * fragment names and order do not count, so a clarified comment does not
 * cost a rebuild; every option and value does.
 *
 * The compiler version is deliberately not part of it: it is the host's, a
 * Debian point update of gcc would otherwise make every cached kernel stale
 * (a six-minute rebuild) without changing what the kernel does, and the
 * build's check that every option came out as asked holds whatever the
 * compiler. The compiler is recorded with each kernel (kernel.json) instead.
 */
export function configHash(merged: MergedConfig, patches: readonly Pick<KernelPatch, "name" | "sha256">[] = []): string {
  const h = createHash("sha256").update(`${KERNEL_BUILD_RECIPE}\n`);
  for (const s of merged.settings) h.update(`${s.name}=${s.value}\n`);
  // The source patches (kernel-patches.ts), by name and bytes: a changed patch is a different kernel.
  for (const p of patches) h.update(`patch ${p.name} ${p.sha256}\n`);
  return h.digest("hex");
}

/** A .config file as name -> value; options written as "is not set" are "n". */
export function parseDotConfig(text: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const set = SET.exec(line);
    const unset = UNSET.exec(line);
    if (set) values.set(set[1] as string, set[2] as string);
    else if (unset) values.set(unset[1] as string, "n");
  }
  return values;
}

export interface ConfigMismatch {
  readonly name: string;
  readonly wanted: string;
  /** The value in .config; "n" for an option missing from it (its menu or a dependency is off). */
  readonly got: string;
  readonly from: string;
}

/**
 * The options that did not come out as the fragments asked. Kconfig drops a
 * setting silently when a dependency is off; this is where that is caught.
 * An option absent from .config counts as off.
 */
export function verifyConfig(merged: MergedConfig, dotConfig: string): ConfigMismatch[] {
  const actual = parseDotConfig(dotConfig);
  const out: ConfigMismatch[] = [];
  for (const s of merged.settings) {
    const got = actual.get(s.name) ?? "n";
    if (got !== s.value) out.push({ name: s.name, wanted: s.value, got, from: s.from });
  }
  return out;
}

/** An error naming every option that came out wrong, or nothing. */
export function requireConfig(merged: MergedConfig, dotConfig: string, where: string): void {
  const bad = verifyConfig(merged, dotConfig);
  if (bad.length === 0) return;
  const list = bad.map((m) => `  ${m.name}: asked ${m.wanted} (${m.from}), got ${m.got}`).join("\n");
  throw new A3sError(
    "EKCONFIG",
    `the kernel config ${where} lacks ${bad.length === 1 ? "an option" : `${bad.length} options`} the fragments ask for:\n${list}`,
    {
      subject: bad[0]?.name,
      hint: "an option is dropped when something it depends on is off: add the dependency to the fragment (see the option's Kconfig 'depends on')",
    },
  );
}
