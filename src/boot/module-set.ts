import { readdir, readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { runTool } from "../util/host-tool.js";
import { canonicalModuleName } from "./modinfo.js";

/** Where each module of a kernel is, by name, and which names it has built in. */
export interface ModuleSet {
  readonly files: ReadonlyMap<string, string>;
  readonly builtin: ReadonlySet<string>;
}

const MODULE_FILE = /\.ko(\.xz|\.zst|\.gz)?$/;

/**
 * Indexes the modules under `dir` (a lib/modules/RELEASE tree or a flat
 * folder). Module file names are the kernel's module names (with "-" for
 * "_" at times), which is how the kernel build names them, so this needs no
 * file to be opened. `modules.builtin`, when present, lists what is built in.
 */
export async function indexModules(dir: string): Promise<ModuleSet> {
  const files = new Map<string, string>();
  const walk = async (d: string): Promise<void> => {
    for (const ent of await readdir(d, { withFileTypes: true })) {
      const p = join(d, ent.name);
      if (ent.isDirectory()) await walk(p);
      else if (ent.isFile() && MODULE_FILE.test(ent.name)) files.set(canonicalModuleName(ent.name.replace(MODULE_FILE, "")), p);
    }
  };
  await walk(dir);
  const builtin = new Set<string>();
  const list = await readFile(join(dir, "modules.builtin"), "utf8").catch(() => "");
  for (const line of list.split("\n")) {
    if (line.trim()) builtin.add(canonicalModuleName(basename(line.trim()).replace(MODULE_FILE, "")));
  }
  return { files, builtin };
}

/** The bytes of a module file, decompressed when it is .ko.xz, .ko.zst or .ko.gz (Debian 13 ships .ko.xz). */
export async function readModuleFile(path: string): Promise<Buffer> {
  if (path.endsWith(".ko")) return readFile(path);
  const tool = path.endsWith(".xz") ? "xz" : path.endsWith(".zst") ? "zstd" : "gzip";
  return (await runTool(tool, ["-dc", path])).stdoutBytes;
}
