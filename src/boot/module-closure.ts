import { A3sError } from "../errors.js";
import { canonicalModuleName, type ModuleInfo } from "./modinfo.js";

/**
 * The modules to load for `wanted`, with everything they depend on, in an
 * order where each module comes after its dependencies. Names the kernel has
 * built in are skipped; a wanted name that is neither available nor built in
 * is skipped too (kernels differ in what they offer), but a dependency that is
 * missing is an error: the module that needs it could not load.
 */
export function moduleLoadOrder(
  wanted: readonly string[],
  available: ReadonlyMap<string, ModuleInfo>,
  builtin: ReadonlySet<string>,
): string[] {
  const order: string[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (raw: string, neededBy: string | undefined): void => {
    const name = canonicalModuleName(raw);
    if (builtin.has(name) || state.get(name) === "done") return;
    if (state.get(name) === "visiting") {
      throw new A3sError("EMODULE", `kernel modules depend on each other in a cycle through ${name}`, { subject: name });
    }
    const info = available.get(name);
    if (!info) {
      if (neededBy === undefined) return;
      throw new A3sError("EMODULE", `kernel module ${neededBy} needs ${name}, which this kernel does not have`, {
        subject: name,
      });
    }
    state.set(name, "visiting");
    for (const dep of info.depends) visit(dep, name);
    state.set(name, "done");
    order.push(name);
  };
  for (const w of wanted) visit(w, undefined);
  return order;
}
