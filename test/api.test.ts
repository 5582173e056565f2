// The public API is what src/index.ts lists by name, and docs/api.md
// documents each name with an example that compiles against the package.
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import * as api from "../src/index.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const index = readFileSync(join(root, "src/index.ts"), "utf8");
const doc = readFileSync(join(root, "docs/api.md"), "utf8");

/** The names src/index.ts exports, values and types, from its `export { … } from` lines. */
function exportedNames(source: string): { values: string[]; types: string[] } {
  const values: string[] = [];
  const types: string[] = [];
  for (const m of source.matchAll(/^export (type )?\{([^}]*)\} from "[^"]+";$/gm)) {
    for (const raw of (m[2] as string).split(",").map((s) => s.trim()).filter(Boolean)) {
      const isType = m[1] !== undefined || raw.startsWith("type ");
      (isType ? types : values).push(raw.replace(/^type /, ""));
    }
  }
  return { values, types };
}

/** Each "### `A`, `B`" section of docs/api.md: its names and its ts code blocks. */
function docSections(text: string): { names: string[]; examples: string[] }[] {
  return text.split(/^### /m).slice(1).map((section) => {
    const heading = section.slice(0, section.indexOf("\n"));
    const names = [...heading.matchAll(/`([^`]+)`/g)].map((m) => m[1] as string);
    const examples = [...section.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1] as string);
    return { names, examples };
  });
}

describe("the public API", () => {
  const { values, types } = exportedNames(index);

  it("is listed by name: no `export *`, and the runtime exports are exactly the value names", () => {
    assert.doesNotMatch(index, /export \*/);
    assert.deepEqual(Object.keys(api).sort(), [...values].sort());
  });

  it("documents every exported name in docs/api.md, each under a heading with an example", () => {
    const sections = docSections(doc);
    const documented = new Map<string, number>();
    for (const s of sections) for (const n of s.names) documented.set(n, s.examples.length);
    const missing = [...values, ...types].filter((n) => !documented.has(n));
    assert.deepEqual(missing, [], "exported but not documented in docs/api.md");
    const withoutExample = [...values, ...types].filter((n) => documented.get(n) === 0);
    assert.deepEqual(withoutExample, [], "documented without an example");
    const extra = [...documented.keys()].filter((n) => !values.includes(n) && !types.includes(n));
    assert.deepEqual(extra, [], "documented in docs/api.md but not exported");
  });

  it("has examples that type-check against the package", () => {
    // Inside the package, so "a3s-rootfs" resolves to this package's own exports (dist/src/index.d.ts).
    const dir = join(root, "dist", "api-examples");
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const files = docSections(doc).flatMap((s, i) =>
      s.examples.map((code, j) => {
        const file = join(dir, `example-${i}-${j}.ts`);
        writeFileSync(file, `${code}\nexport {};\n`);
        return file;
      }),
    );
    const program = ts.createProgram(files, {
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      types: ["node"],
      typeRoots: [join(root, "node_modules/@types")],
    });
    const problems = ts
      .getPreEmitDiagnostics(program)
      .map((d) => `${d.file ? `${d.file.fileName.slice(dir.length + 1)}: ` : ""}${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`);
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(problems, []);
  });
});
