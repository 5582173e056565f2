import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { guestProgramPath, readDirectoryTree } from "../../src/index.js";
import { CLI } from "./cli.js";

/**
 * The build the rootless comparison makes as root and as an unprivileged
 * user: a BusyBox rootfs (hundreds of hardlinks, symlinks, setuid-free but
 * root-owned) with the probe as agent, into every format, plain and
 * compressed. The outputs' bytes must not depend on who built them.
 */
export const COMPARED_OUTPUTS = [
  "tar:rootfs.tar",
  "tar:rootfs.tar.gz",
  "cpio:rootfs.cpio",
  "cpio:rootfs.cpio.zst",
  "ext4:rootfs.ext4",
  "erofs:rootfs.erofs",
  "squashfs:rootfs.sqfs",
  "dir:rootfs",
];

/** What one build gave: sha256 per output spec; for `dir`, of the tree read back (with its sidecar). */
export type OutputHashes = Record<string, string>;

/**
 * Runs the build with the real CLI in `cwd` (TMPDIR and HOME there too), as
 * this process's user or, with `asUser`, through setpriv as that uid/gid.
 */
export async function buildComparedOutputs(cwd: string, asUser?: number): Promise<{ hashes: OutputHashes; stderr: string; status: number | null }> {
  const args = [CLI, "build", "busybox", "--links", "hardlink", "--agent", guestProgramPath("probe"), "--env", "MODE=rootless", "--hostname", "box"];
  for (const o of COMPARED_OUTPUTS) args.push("-o", o);
  args.push("--json");
  const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: cwd, HOME: cwd };
  delete env.SOURCE_DATE_EPOCH;
  const command = asUser === undefined ? [process.execPath, ...args] : ["setpriv", `--reuid=${asUser}`, `--regid=${asUser}`, "--clear-groups", process.execPath, ...args];
  const r = spawnSync(command[0] as string, command.slice(1), { cwd, env, encoding: "utf8" });
  const hashes: OutputHashes = {};
  if (r.status === 0) {
    const report = JSON.parse(r.stdout) as { outputs: { format: string; path: string; sha256: string | null }[] };
    for (const [i, o] of report.outputs.entries()) {
      hashes[COMPARED_OUTPUTS[i] as string] = o.sha256 ?? (await directoryTreeHash(join(cwd, "rootfs")));
    }
  }
  return { hashes, stderr: r.stderr, status: r.status };
}

/** A hash of what a dir output holds as read back (owners, modes and devices from its sidecar when not root). */
async function directoryTreeHash(dir: string): Promise<string> {
  const tree = await readDirectoryTree(dir);
  const hash = createHash("sha256");
  for (const e of tree.entries()) {
    const i = e.inode;
    const detail =
      i.kind === "file" ? `size=${i.content.type === "bytes" ? i.content.data.byteLength : i.content.size}` : i.kind === "symlink" ? `-> ${i.target}` : i.kind === "char" || i.kind === "block" ? `${i.major},${i.minor}` : "";
    hash.update(`${e.path} ${e.kind} ${i.mode.toString(8)} ${i.uid}:${i.gid} ${e.path === "/" ? "" : i.mtime} ${detail} ${e.linkPath ?? ""}\n`);
  }
  return hash.digest("hex");
}
