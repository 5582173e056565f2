import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { canonicalModuleName, parseModinfo, type ModuleInfo } from "./modinfo.js";
import { moduleLoadOrder } from "./module-closure.js";
import { readModuleFile, type ModuleSet } from "./module-set.js";

/**
 * Copies the modules `wanted` needs, dependencies included, from `set` into
 * `destDir` as uncompressed .ko files (the guest init loads them with
 * finit_module and has no decompressor), and returns them in load order.
 * Only the modules in the closure are opened.
 */
export async function selectModules(
  set: ModuleSet,
  wanted: readonly string[],
  destDir: string,
): Promise<{ name: string; path: string; depends: string[] }[]> {
  const infos = new Map<string, ModuleInfo>();
  const bytes = new Map<string, Buffer>();
  const queue = wanted.map(canonicalModuleName);
  while (queue.length > 0) {
    const name = queue.shift() as string;
    if (infos.has(name) || set.builtin.has(name)) continue;
    const file = set.files.get(name);
    if (!file) continue; // moduleLoadOrder reports a missing dependency; a missing wanted module is skipped
    const data = await readModuleFile(file);
    const info = parseModinfo(data, file);
    infos.set(canonicalModuleName(info.name), info);
    bytes.set(canonicalModuleName(info.name), data);
    queue.push(...info.depends.map(canonicalModuleName));
  }
  const order = moduleLoadOrder(wanted, infos, set.builtin);
  const out: { name: string; path: string; depends: string[] }[] = [];
  for (const name of order) {
    const path = join(destDir, `${name}.ko`);
    await writeFile(path, bytes.get(name) as Buffer);
    out.push({ name, path, depends: (infos.get(name)?.depends ?? []).map(canonicalModuleName) });
  }
  return out;
}
