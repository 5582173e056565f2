import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, posix, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

/**
 * The import graph of the TypeScript sources under a root, and the checks
 * docs/architecture.md states: no two files import each other in a circle,
 * no two folders do either, and every top-level folder imports only folders
 * of lower layers.
 *
 * Imports are read with the compiler's own scanner (ts.preProcessFile), so
 * `import type` and `export ... from` count too: a cycle through types is
 * still two modules that cannot be understood one without the other.
 */

/** File (path relative to the root, "/"-separated) → the files it imports. */
export type ImportGraph = Map<string, string[]>;

export function readImportGraph(root: string): ImportGraph {
  const graph: ImportGraph = new Map();
  for (const file of listTypeScript(root)) {
    const text = readFileSync(join(root, file), "utf8");
    const imports = ts.preProcessFile(text, true, false).importedFiles.map((f) => f.fileName);
    const targets = imports
      .filter((spec) => spec.startsWith("."))
      .map((spec) => posix.normalize(posix.join(posix.dirname(file), spec)).replace(/\.js$/, ".ts"));
    graph.set(file, [...new Set(targets)]);
  }
  return graph;
}

function listTypeScript(root: string, dir = root): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...listTypeScript(root, path));
    else if (name.endsWith(".ts") && !name.endsWith(".d.ts")) out.push(relative(root, path).split("\\").join("/"));
  }
  return out;
}

/** Every set of nodes that reach each other (Tarjan's strongly connected components), largest first. */
export function cycles(edges: ReadonlyMap<string, Iterable<string>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let next = 0;
  // Iterative, so a deep graph cannot overflow the call stack.
  for (const start of edges.keys()) {
    if (index.has(start)) continue;
    const work: { node: string; children: string[]; i: number }[] = [];
    const enter = (node: string): void => {
      index.set(node, next);
      low.set(node, next++);
      stack.push(node);
      onStack.add(node);
      work.push({ node, children: [...(edges.get(node) ?? [])], i: 0 });
    };
    enter(start);
    while (work.length > 0) {
      const top = work[work.length - 1]!;
      if (top.i < top.children.length) {
        const child = top.children[top.i++]!;
        if (!index.has(child)) enter(child);
        else if (onStack.has(child)) low.set(top.node, Math.min(low.get(top.node)!, index.get(child)!));
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent) low.set(parent.node, Math.min(low.get(parent.node)!, low.get(top.node)!));
      if (low.get(top.node) !== index.get(top.node)) continue;
      const component: string[] = [];
      for (let n = stack.pop(); n !== undefined; n = stack.pop()) {
        onStack.delete(n);
        component.push(n);
        if (n === top.node) break;
      }
      const selfLoop = [...(edges.get(top.node) ?? [])].includes(top.node);
      if (component.length > 1 || selfLoop) found.push(component.sort());
    }
  }
  return found.sort((a, b) => b.length - a.length);
}

/** The folder a file belongs to ("oci/registry" for "oci/registry/client.ts"); a file at the root is its own node. */
export function folderOf(file: string): string {
  const dir = posix.dirname(file);
  return dir === "." ? file.replace(/\.ts$/, "") : dir;
}

/** Folder → the other folders its files import. */
export function folderGraph(graph: ImportGraph): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const [file, targets] of graph) {
    const from = folderOf(file);
    const set = out.get(from) ?? new Set<string>();
    out.set(from, set);
    for (const t of targets) if (folderOf(t) !== from) set.add(folderOf(t));
  }
  return out;
}

/** The top-level node of a file: its first folder, or the file itself at the root ("errors", "index"). */
export function topOf(file: string): string {
  const first = file.split("/")[0]!;
  return first.endsWith(".ts") ? first.replace(/\.ts$/, "") : first;
}

/**
 * Imports that go sideways or up: `layers` lists the top-level nodes from the
 * top down, a group per layer. A node may import only nodes of lower layers,
 * never one of its own layer or above. A node missing from `layers` is a
 * violation too, so a new folder has to be placed on purpose.
 */
export function layerViolations(graph: ImportGraph, layers: readonly (readonly string[])[]): string[] {
  const rank = new Map<string, number>();
  layers.forEach((group, i) => group.forEach((n) => rank.set(n, i)));
  const out = new Set<string>();
  for (const [file, targets] of graph) {
    const from = topOf(file);
    const r = rank.get(from);
    if (r === undefined) {
      out.add(`${file}: its folder ${from} has no layer`);
      continue;
    }
    for (const t of targets) {
      const to = topOf(t);
      if (to === from) continue;
      const s = rank.get(to);
      if (s === undefined) out.add(`${file} imports ${t}: ${to} has no layer`);
      else if (s <= r) out.add(`${file} imports ${t}: ${from} may not import ${to}${s === r ? " (same layer)" : " (a layer above)"}`);
    }
  }
  return [...out].sort();
}

/** Top-level part → the other top-level parts it imports, for a summary of the layers. */
export function topGraph(graph: ImportGraph): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const [file, targets] of graph) {
    const from = topOf(file);
    const set = out.get(from) ?? new Set<string>();
    out.set(from, set);
    for (const t of targets) if (topOf(t) !== from) set.add(topOf(t));
  }
  return out;
}

/** Imports that name a file that is not there (a move that missed one), relative to the root. */
export function missingTargets(graph: ImportGraph): string[] {
  const out: string[] = [];
  for (const [file, targets] of graph) for (const t of targets) if (!graph.has(t)) out.push(`${file} imports ${t}, which does not exist`);
  return out;
}

/** The repository's src/ folder, from this file's place in dist/test/helpers. */
export function sourceRoot(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), "../../../src");
}
