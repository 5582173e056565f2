import { Readable } from "node:stream";
import { runTool } from "../../util/host-tool.js";

/**
 * Device nodes, fifos and extended attributes of a dir output, made with
 * host programs (Node has no mknod or xattr API), one program run for many
 * entries. Each run of a program forks this process, and a fork costs in
 * proportion to the process's memory: with a two-layer Debian image's tree
 * in memory, a spawn here took about 25 ms of the main thread, and the 8
 * device nodes of Debian's minbase, one `mknod` each, took 200 ms of a 2 s
 * build (CPU profile of `build oci:... -o dir:...`).
 */

/** One fifo or device node to create, with mode 600 (its own mode comes with the other metadata). */
export type SpecialNode =
  | { readonly path: string; readonly kind: "fifo" }
  | { readonly path: string; readonly kind: "char" | "block"; readonly major: number; readonly minor: number };

/**
 * The script `sh` runs: its arguments are the nodes, taken four (device) or
 * two (fifo) at a time. Every name is an argument, never part of the script,
 * so no name is ever parsed by the shell; every path is absolute (under the
 * output's directory), so none reads as an option.
 */
const MAKE_NODES = `
while [ "$#" -gt 0 ]; do
  case "$1" in
    p) mkfifo -m 600 "$2" || exit 1; shift 2 ;;
    c|b) mknod -m 600 "$2" "$1" "$3" "$4" || exit 1; shift 4 ;;
    *) echo "a3s-rootfs: unknown node kind $1" >&2; exit 2 ;;
  esac
done
`;

/** Nodes per `sh` run: their arguments stay far below the kernel's limit on a command line. */
const NODES_PER_RUN = 2000;

/** Creates the nodes, in order, with as few program runs as the argument limit allows (`perRun` nodes each). */
export async function makeSpecialNodes(nodes: readonly SpecialNode[], signal: AbortSignal | undefined, perRun = NODES_PER_RUN): Promise<void> {
  for (let at = 0; at < nodes.length; at += perRun) {
    const args = nodes.slice(at, at + perRun).flatMap((n) =>
      n.kind === "fifo" ? ["p", n.path] : [n.kind === "char" ? "c" : "b", n.path, String(n.major), String(n.minor)],
    );
    await runTool("sh", ["-c", MAKE_NODES, "a3s-rootfs-nodes", ...args], { signal });
  }
}

/** One path's extended attributes to set. */
export interface XattrSet {
  readonly path: string;
  readonly xattrs: ReadonlyMap<string, Uint8Array>;
}

/**
 * Sets the attributes of every path with one `setfattr --restore`, never
 * following a symlink (-h: lsetxattr, as for a single name). The dump is
 * getfattr's format, read from stdin; paths and names are written with every
 * byte outside a plain set as "\ooo", which setfattr decodes back, so no
 * name can end a line or a field early, and values are hex.
 */
export async function setXattrs(sets: readonly XattrSet[], signal: AbortSignal | undefined): Promise<void> {
  if (sets.length === 0) return;
  const lines: string[] = [];
  for (const s of sets) {
    if (s.xattrs.size === 0) continue;
    lines.push(`# file: ${escapeOctal(s.path)}`);
    for (const [name, value] of s.xattrs) lines.push(`${escapeOctal(name)}=0x${Buffer.from(value).toString("hex")}`);
    lines.push("");
  }
  await runTool("setfattr", ["-h", "--restore=-"], { input: Readable.from([Buffer.from(lines.join("\n") + "\n", "utf8")]), signal });
}

/** Bytes written as themselves in a restore dump; all others as "\ooo". */
const PLAIN = /^[A-Za-z0-9/._+:@,-]$/;

/** The UTF-8 bytes of `s`, each outside PLAIN as a backslash and three octal digits. */
export function escapeOctal(s: string): string {
  let out = "";
  for (const b of Buffer.from(s, "utf8")) {
    const c = String.fromCharCode(b);
    out += PLAIN.test(c) ? c : "\\" + b.toString(8).padStart(3, "0");
  }
  return out;
}
