// The dependency rules of docs/architecture.md, checked on every run: no
// import cycle between files or between folders, and every folder imports
// only the layers below it.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { cycles, folderGraph, layerViolations, missingTargets, readImportGraph, sourceRoot, topGraph } from "./helpers/import-graph.js";

/**
 * The top-level parts of src/, from the top down, a group per layer. A part
 * may import only parts of lower layers; parts of one layer never import each
 * other. A new folder has to be placed here on purpose.
 */
const LAYERS = [
  ["index"], // the public API
  ["cli"],
  ["builder", "doctor"],
  ["audit", "boot"],
  ["sources", "outputs"],
  ["provision"],
  ["programs"],
  ["oci"],
  ["formats", "layout"],
  ["tree"],
  ["util"],
  ["errors"],
];

describe("architecture", () => {
  const graph = readImportGraph(sourceRoot());

  it("reads every source file and every import resolves to one", () => {
    assert.ok(graph.size > 100, `only ${graph.size} files read from ${sourceRoot()}`);
    assert.deepEqual(missingTargets(graph), []);
  });

  it("has no import cycle between files", () => {
    assert.deepEqual(cycles(graph), []);
  });

  it("has no import cycle between folders, subfolders included", () => {
    assert.deepEqual(cycles(folderGraph(graph)), []);
  });

  it("imports only down the layers", (t) => {
    assert.deepEqual(layerViolations(graph, LAYERS), []);
    for (const group of LAYERS) {
      for (const part of group) t.diagnostic(`${part} -> ${[...(topGraph(graph).get(part) ?? [])].sort().join(", ") || "(nothing)"}`);
    }
  });

  it("the checks find a file cycle, a folder cycle and an upward import when there is one", () => {
    const bad = new Map([
      ["a/x.ts", ["b/y.ts"]],
      ["b/y.ts", ["a/z.ts"]],
      ["a/z.ts", ["a/x.ts"]],
      ["b/w.ts", []],
    ]);
    assert.deepEqual(cycles(bad), [["a/x.ts", "a/z.ts", "b/y.ts"]]);
    assert.deepEqual(cycles(folderGraph(bad)), [["a", "b"]]);
    assert.deepEqual(layerViolations(bad, [["a"], ["b"]]), ["b/y.ts imports a/z.ts: b may not import a (a layer above)"]);
    assert.deepEqual(layerViolations(bad, [["a", "b"]]), [
      "a/x.ts imports b/y.ts: a may not import b (same layer)",
      "b/y.ts imports a/z.ts: b may not import a (same layer)",
    ]);
    assert.deepEqual(layerViolations(bad, [["a"]]), [
      "a/x.ts imports b/y.ts: b has no layer",
      "b/w.ts: its folder b has no layer",
      "b/y.ts: its folder b has no layer",
    ]);
  });
});
