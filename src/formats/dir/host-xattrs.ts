import { spawn } from "node:child_process";
import { findExecutable } from "../../util/host-tool.js";

/**
 * Extended attributes of every file under a host directory, read with one
 * `getfattr -R` (Node has no xattr API). Keys are rootfs paths ("/" for the
 * directory itself). Symlinks are never followed (-P -h): a link's entry
 * must not report its target's capabilities.
 * Undefined when getfattr (Debian package "attr") is not installed.
 */
export async function readHostXattrs(dir: string): Promise<Map<string, Map<string, Buffer>> | undefined> {
  const getfattr = findExecutable("getfattr");
  if (!getfattr) return undefined;
  const out = await new Promise<Buffer>((resolve, reject) => {
    const child = spawn(getfattr, ["-R", "-P", "-h", "-d", "-m", "-", "-e", "hex", "--absolute-names", "--", dir], {
      stdio: ["ignore", "pipe", "ignore"],
      env: { ...process.env, LC_ALL: "C" },
    });
    const chunks: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => chunks.push(b));
    child.on("error", reject);
    // getfattr exits 1 when one file could not be read; what it printed for
    // the others still stands.
    child.on("close", () => resolve(Buffer.concat(chunks)));
  });
  return parseGetfattr(out, dir);
}

/**
 * getfattr's dump: "# file: PATH" then "name=0xHEX" lines, a blank line
 * between files. In PATH, getfattr writes "\ooo" for a backslash, a newline
 * and other control bytes, so every record is one line.
 */
export function parseGetfattr(out: Buffer, dir: string): Map<string, Map<string, Buffer>> {
  const result = new Map<string, Map<string, Buffer>>();
  const prefix = dir.replace(/\/+$/, "");
  let current: Map<string, Buffer> | undefined;
  for (const raw of splitLines(out)) {
    if (raw.length === 0) {
      current = undefined;
      continue;
    }
    const line = raw.toString("latin1");
    if (line.startsWith("# file: ")) {
      const host = unescapeOctal(raw.subarray(8)).toString("utf8");
      const rel = host === prefix ? "" : host.startsWith(prefix + "/") ? host.slice(prefix.length) : undefined;
      current = undefined;
      if (rel === undefined) continue;
      current = new Map();
      result.set(rel === "" ? "/" : rel, current);
      continue;
    }
    if (!current) continue;
    const eq = line.indexOf("=");
    const name = unescapeOctal(raw.subarray(0, eq < 0 ? raw.length : eq)).toString("utf8");
    const value = eq < 0 ? "" : line.slice(eq + 1);
    current.set(name, value.startsWith("0x") ? Buffer.from(value.slice(2), "hex") : Buffer.from(value.replace(/^"|"$/g, ""), "latin1"));
  }
  for (const [path, attrs] of result) if (attrs.size === 0) result.delete(path);
  return result;
}

function splitLines(b: Buffer): Buffer[] {
  const lines: Buffer[] = [];
  let start = 0;
  for (let nl = b.indexOf(0x0a); nl >= 0; nl = b.indexOf(0x0a, start)) {
    lines.push(b.subarray(start, nl));
    start = nl + 1;
  }
  if (start < b.length) lines.push(b.subarray(start));
  return lines;
}

/** "\ooo" (three octal digits) → that byte; everything else as is. */
function unescapeOctal(b: Buffer): Buffer {
  if (!b.includes(0x5c)) return b;
  const out: number[] = [];
  for (let i = 0; i < b.length; i++) {
    const c = b[i] as number;
    const oct = b.subarray(i + 1, i + 4).toString("latin1");
    if (c === 0x5c && /^[0-7]{3}$/.test(oct)) {
      out.push(parseInt(oct, 8) & 0xff);
      i += 3;
    } else out.push(c);
  }
  return Buffer.from(out);
}
