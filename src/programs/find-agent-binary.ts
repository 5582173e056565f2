import { constants } from "node:fs";
import { access, realpath, stat } from "node:fs/promises";
import { delimiter, dirname, isAbsolute, join, resolve } from "node:path";
import { A3sError } from "../errors.js";

/** The agent's file name, on the host and in the guest. */
export const AGENT_BINARY_NAME = "a3s-box-code";

export interface FindAgentOptions {
  /** An explicit path; if given it is the only place tried. */
  readonly path?: string;
  /** Environment to read A3S_AGENT_BINARY, A3S_HOME and PATH from (default: process.env). */
  readonly env?: NodeJS.ProcessEnv;
  /** The running program, whose directory is searched (default: the main script, process.argv[1]). */
  readonly programPath?: string;
}

/**
 * Finds the agent binary on the host. The places, in order:
 *  1. the explicit path (then nothing else is tried);
 *  2. $A3S_AGENT_BINARY;
 *  3. $A3S_HOME/agent/a3s-box-code;
 *  4. a3s-box-code beside the running program;
 *  5. a3s-box-code on $PATH.
 * The first executable regular file wins. If none is found the error lists
 * every place tried and why each was passed over. An explicit path that is
 * not usable is an error at once: silently taking another binary instead of
 * the one the user named would build the wrong guest.
 */
export async function findAgentBinary(opts: FindAgentOptions = {}): Promise<string> {
  const env = opts.env ?? process.env;
  const candidates: { where: string; path: string }[] = [];
  if (opts.path) {
    const path = resolve(opts.path);
    const why = await whyNotExecutable(path);
    if (why === undefined) return path;
    throw new A3sError("ENOAGENT", `the agent binary ${path} cannot be used: ${why}`, { subject: path });
  }
  if (env.A3S_AGENT_BINARY) candidates.push({ where: "$A3S_AGENT_BINARY", path: env.A3S_AGENT_BINARY });
  if (env.A3S_HOME) candidates.push({ where: "$A3S_HOME", path: join(env.A3S_HOME, "agent", AGENT_BINARY_NAME) });
  const program = opts.programPath ?? process.argv[1];
  if (program) {
    const real = await realpath(program).catch(() => program);
    candidates.push({ where: "beside the program", path: join(dirname(real), AGENT_BINARY_NAME) });
  }
  for (const dir of (env.PATH ?? "").split(delimiter).filter(Boolean)) {
    candidates.push({ where: "$PATH", path: join(dir, AGENT_BINARY_NAME) });
  }

  const tried: string[] = [];
  const seen = new Set<string>();
  for (const c of candidates) {
    const path = isAbsolute(c.path) ? c.path : resolve(c.path);
    if (seen.has(path)) continue;
    seen.add(path);
    const why = await whyNotExecutable(path);
    if (why === undefined) return path;
    tried.push(`  ${c.where}: ${path} (${why})`);
  }
  throw new A3sError("ENOAGENT", `no agent binary found; tried:\n${tried.join("\n") || "  (nowhere: no candidates)"}`, {
    hint: `pass --agent FILE, or set A3S_AGENT_BINARY, or put ${AGENT_BINARY_NAME} in $A3S_HOME/agent or on PATH`,
  });
}

async function whyNotExecutable(path: string): Promise<string | undefined> {
  const st = await stat(path).catch((e: NodeJS.ErrnoException) => e);
  if (st instanceof Error) return st.code === "ENOENT" ? "does not exist" : st.message;
  if (!st.isFile()) return "not a regular file";
  try {
    await access(path, constants.X_OK);
  } catch {
    return "not executable";
  }
  return undefined;
}
