import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const cacheDir = join(tmpdir(), "a3s-test-binaries");

/**
 * Compiles a tiny C program into a real ELF executable for tests: static by
 * default, dynamic on request. `padBytes` adds a data array so the binary has
 * a chosen size (the benchmarks' "1 MB agent"); `source` is a whole program
 * of the test's own instead. Cached across test files.
 */
export function compileTestBinary(opts: { static?: boolean; padBytes?: number; exitCode?: number; source?: string } = {}): string {
  const isStatic = opts.static ?? true;
  const pad = opts.padBytes ?? 0;
  const code = opts.exitCode ?? 0;
  const sourceTag = opts.source !== undefined ? `-${createHash("sha256").update(opts.source).digest("hex").slice(0, 12)}` : "";
  const name = `agent-${isStatic ? "static" : "dynamic"}-${pad}-${code}${sourceTag}`;
  const out = join(cacheDir, name);
  if (existsSync(out)) return out;
  mkdirSync(cacheDir, { recursive: true });
  const src = join(cacheDir, `${name}.c`);
  const padding = pad > 0 ? `volatile unsigned char pad[${pad}] = {1};\n` : "";
  writeFileSync(src, opts.source ?? `${padding}int main(void) { return ${code}; }\n`);
  const tmp = `${out}.${process.pid}`;
  execFileSync("cc", [...(isStatic ? ["-static"] : []), "-Os", "-o", tmp, src]);
  execFileSync("mv", [tmp, out]);
  return out;
}
