import { isA3sError } from "../errors.js";
import type { AgentDefaults } from "../layout/index.js";
import { normaliseRootfsPath, readContent, type RootfsTree } from "../tree/index.js";
import type { OciImageConfig } from "./image-config.js";

/** The PATH Docker gives a container whose image sets none. */
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/** Largest /etc/passwd or /etc/group read; a real one is kilobytes, a hostile one could be a huge layer file. */
const MAX_ACCOUNT_FILE = 4 * 1024 * 1024;
/** The largest uid or gid the guest config accepts ((uid_t)-1 is "no change" to the kernel). */
const ID_MAX = 0xfffffffe;

/**
 * How the image's config says a container starts (Entrypoint, Cmd, Env,
 * WorkingDir, User), turned into the agent's defaults the way Docker would
 * start it:
 * - argv is Entrypoint followed by Cmd (or Cmd alone); a program name without
 *   a "/" is looked up in the image's PATH inside the tree, as execvp would
 *   in the container, because the guest init runs an absolute path;
 * - Env is kept, with PATH and HOME added when the image sets none (Docker
 *   does the same; HOME from the user's /etc/passwd entry, else "/");
 * - User "name", "uid", "name:group", "uid:gid" and mixes become "UID:GID",
 *   names resolved through the tree's own /etc/passwd and /etc/group (the
 *   guest has no user database); a numeric uid is kept even when the image
 *   has no such account, with its passwd group or 0, as Docker does.
 *
 * What cannot be resolved is returned as a warning and left out: without an
 * agent path the build must be given one, and an unknown user never falls
 * back to root silently (the path is dropped with it).
 */
export async function agentDefaultsFromConfig(
  config: OciImageConfig,
  tree: RootfsTree,
): Promise<{ defaults: AgentDefaults; warnings: string[] }> {
  const c = config.config;
  const warnings: string[] = [];
  const env = [...(c.Env ?? [])];
  const envValue = (name: string): string | undefined => {
    // The last definition wins, as in a process environment built from this list.
    const hit = [...env].reverse().find((e) => e.startsWith(name + "="));
    return hit === undefined ? undefined : hit.slice(name.length + 1);
  };

  let cwd: string | undefined;
  if (c.WorkingDir) {
    try {
      cwd = normaliseRootfsPath(c.WorkingDir.startsWith("/") ? c.WorkingDir : "/" + c.WorkingDir);
    } catch {
      warnings.push(`the image's WorkingDir ${JSON.stringify(c.WorkingDir)} is not a usable path; it is ignored`);
    }
  }

  let user: { spec: string; home: string | undefined } | undefined;
  let userFailed = false;
  if (c.User) {
    const resolved = await resolveImageUser(c.User, tree);
    if (typeof resolved === "string") {
      warnings.push(resolved);
      userFailed = true;
    } else {
      user = resolved;
    }
  }
  if (envValue("PATH") === undefined) env.unshift(`PATH=${DEFAULT_PATH}`);
  if (envValue("HOME") === undefined) env.push(`HOME=${user?.home ?? (await homeOf(tree, 0)) ?? "/"}`);

  const argv = [...(c.Entrypoint ?? []), ...(c.Cmd ?? [])];
  let path: string | undefined;
  if (argv.length > 0 && !userFailed) {
    const found = findProgram(tree, argv[0] as string, envValue("PATH") ?? DEFAULT_PATH, cwd ?? "/");
    if (typeof found === "string") path = found;
    else warnings.push(found.warning);
  } else if (argv.length === 0) {
    warnings.push("the image names no Entrypoint or Cmd");
  }
  const defaults: AgentDefaults = {
    ...(path === undefined ? {} : { path, args: argv.slice(1) }),
    env,
    ...(cwd === undefined ? {} : { cwd }),
    ...(user === undefined ? {} : { user: user.spec }),
  };
  return { defaults, warnings };
}

/** The absolute path of `program` in the tree, searched like execvp would; a warning when it is not there. */
function findProgram(tree: RootfsTree, program: string, searchPath: string, cwd: string): string | { warning: string } {
  const isExecutable = (p: string): boolean => {
    try {
      const inode = tree.lookup(p);
      return inode?.kind === "file" && (inode.mode & 0o111) !== 0;
    } catch (e) {
      if (isA3sError(e)) return false; // a symlink loop or a non-directory parent: not there
      throw e;
    }
  };
  if (program.includes("/")) {
    let p: string;
    try {
      p = normaliseRootfsPath(program.startsWith("/") ? program : `${cwd}/${program}`);
    } catch {
      return { warning: `the image's program ${JSON.stringify(program)} is not a usable path` };
    }
    return isExecutable(p) ? p : { warning: `the image's program ${p} is not an executable file in the image` };
  }
  for (const dir of searchPath.split(":")) {
    if (!dir.startsWith("/")) continue; // a relative PATH entry depends on the cwd at run time; execvp in a container would too, but we need one answer
    let p: string;
    try {
      p = normaliseRootfsPath(`${dir}/${program}`);
    } catch {
      continue;
    }
    if (isExecutable(p)) return p;
  }
  return { warning: `the image's program ${JSON.stringify(program)} is not found in its PATH (${searchPath})` };
}

interface Account {
  readonly name: string;
  readonly id: number;
  /** passwd: the primary group; group: unused. */
  readonly gid: number;
  readonly home: string;
}

/** "UID:GID" for an image's User field, or a warning saying why it cannot be resolved. */
export async function resolveImageUser(
  spec: string,
  tree: RootfsTree,
): Promise<{ spec: string; home: string | undefined } | string> {
  const colon = spec.indexOf(":");
  const userPart = colon < 0 ? spec : spec.slice(0, colon);
  const groupPart = colon < 0 ? undefined : spec.slice(colon + 1);
  const numeric = (s: string): number | undefined => (/^\d{1,10}$/.test(s) && Number(s) <= ID_MAX ? Number(s) : undefined);
  const passwd = await readAccounts(tree, "/etc/passwd");
  const uidNumber = numeric(userPart);
  const account =
    uidNumber === undefined ? passwd.find((a) => a.name === userPart) : passwd.find((a) => a.id === uidNumber);
  if (userPart === "" || (uidNumber === undefined && !account)) {
    return `the image's User ${JSON.stringify(spec)} is not in its /etc/passwd; the agent's path and user are not taken from the image`;
  }
  const uid = uidNumber ?? (account as Account).id;
  let gid: number;
  if (groupPart === undefined || groupPart === "") {
    gid = account?.gid ?? 0;
  } else {
    const gidNumber = numeric(groupPart);
    if (gidNumber !== undefined) {
      gid = gidNumber;
    } else {
      const group = (await readAccounts(tree, "/etc/group")).find((g) => g.name === groupPart);
      if (!group) {
        return `the image's User ${JSON.stringify(spec)} names group ${JSON.stringify(groupPart)}, which is not in its /etc/group; the agent's path and user are not taken from the image`;
      }
      gid = group.id;
    }
  }
  return { spec: `${uid}:${gid}`, home: account?.home };
}

async function homeOf(tree: RootfsTree, uid: number): Promise<string | undefined> {
  return (await readAccounts(tree, "/etc/passwd")).find((a) => a.id === uid)?.home || undefined;
}

/** Entries of a passwd(5) or group(5) file in the tree; none when it is missing, unreadable or too large. */
async function readAccounts(tree: RootfsTree, path: string): Promise<Account[]> {
  let inode;
  try {
    inode = tree.lookup(path);
  } catch {
    return [];
  }
  if (inode?.kind !== "file") return [];
  const size = inode.content.type === "bytes" ? inode.content.data.byteLength : inode.content.size;
  if (size > MAX_ACCOUNT_FILE) return [];
  const text = (await readContent(inode.content, path)).toString("utf8");
  const out: Account[] = [];
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f.length < 3 || f[0] === "" || line.startsWith("#")) continue;
    const id = /^\d{1,10}$/.test(f[2] as string) ? Number(f[2]) : NaN;
    if (!Number.isSafeInteger(id) || id > ID_MAX) continue;
    const gid = /^\d{1,10}$/.test(f[3] ?? "") ? Number(f[3]) : 0;
    out.push({ name: f[0] as string, id, gid: gid > ID_MAX ? 0 : gid, home: f[5] ?? "" });
  }
  return out;
}
