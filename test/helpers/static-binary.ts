import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const cacheDir = join(tmpdir(), "a3s-test-binaries");

/**
 * Compiles a tiny C program into a real ELF executable for tests: static by
 * default, dynamic on request. `padBytes` adds a data array so the binary has
 * a chosen size (the benchmarks' "1 MB agent"). Cached across test files.
 */
export function compileTestBinary(opts: { static?: boolean; padBytes?: number; exitCode?: number } = {}): string {
  const isStatic = opts.static ?? true;
  const pad = opts.padBytes ?? 0;
  const code = opts.exitCode ?? 0;
  const name = `agent-${isStatic ? "static" : "dynamic"}-${pad}-${code}`;
  const out = join(cacheDir, name);
  if (existsSync(out)) return out;
  mkdirSync(cacheDir, { recursive: true });
  const src = join(cacheDir, `${name}.c`);
  const padding = pad > 0 ? `volatile unsigned char pad[${pad}] = {1};\n` : "";
  writeFileSync(src, `${padding}int main(void) { return ${code}; }\n`);
  const tmp = `${out}.${process.pid}`;
  execFileSync("cc", [...(isStatic ? ["-static"] : []), "-Os", "-o", tmp, src]);
  execFileSync("mv", [tmp, out]);
  return out;
}
