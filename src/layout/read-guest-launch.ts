import { withContentBytes, type RootfsTree } from "../tree/index.js";
import { GUEST_CONFIG_DROPIN_DIR, GUEST_CONFIG_PATH } from "./guest-config.js";
import { DEFAULT_AGENT_PATH } from "./guest-layout.js";

/** How init will start the agent of a rootfs, as its guest config says (docs/guest-protocol.md §3). */
export interface GuestLaunch {
  /** The agent's path in the guest (also its argv[0]). */
  readonly agent: string;
  readonly args: readonly string[];
  readonly env: readonly string[];
  readonly cwd: string;
  /** "UID:GID". */
  readonly user: string;
}

/** init's defaults for keys a config leaves out. */
const DEFAULTS: GuestLaunch = { agent: DEFAULT_AGENT_PATH, args: [], env: [], cwd: "/workspace", user: "0:0" };
/** init reads at most this much of one config file. */
const MAX_CONFIG_BYTES = 1 << 20;

/**
 * The agent's launch from the guest config in `tree` and its drop-ins, laid
 * over each other with init's rules: single-valued keys are replaced by a
 * later file, `env` is appended, `arg` is replaced when a later file has any.
 * Undefined when the tree has no guest config (it is not an A3S rootfs).
 * Lines init would refuse are skipped: the guest reports them at boot.
 */
export async function readGuestLaunch(tree: RootfsTree): Promise<GuestLaunch | undefined> {
  const main = await readText(tree, GUEST_CONFIG_PATH);
  if (main === undefined) return undefined;
  let launch: GuestLaunch = DEFAULTS;
  const texts = [main];
  for (const path of guestConfigDropinPaths(tree)) {
    const text = await readText(tree, path);
    if (text !== undefined) texts.push(text);
  }
  for (const text of texts) launch = layOver(launch, text);
  return launch;
}

function layOver(base: GuestLaunch, text: string): GuestLaunch {
  const entries = guestConfigEntries(text);
  if (entries === undefined) return base;
  const next = { ...base, env: [...base.env] };
  const args: string[] = [];
  for (const { key, value } of entries) {
    if (key === "agent" && value.startsWith("/")) next.agent = value;
    else if (key === "arg") args.push(value);
    else if (key === "env" && value.indexOf("=") > 0) next.env.push(value);
    else if (key === "cwd" && value.startsWith("/")) next.cwd = value;
    else if (key === "user" && /^\d+:\d+$/.test(value)) next.user = value;
  }
  if (args.length > 0) next.args = args;
  return next;
}

/**
 * A config file's KEY=VALUE lines, values unescaped, in file order; comments
 * and lines init would refuse are left out. Undefined when the file is not a
 * guest config: a file is written in the lowest version whose keys it uses
 * (§13), and both versions carry the launch and share keys.
 */
export function guestConfigEntries(text: string): { key: string; value: string }[] | undefined {
  const lines = text.split("\n");
  if (lines[0] !== "a3s-guest-config 1" && lines[0] !== "a3s-guest-config 2") return undefined;
  const entries: { key: string; value: string }[] = [];
  for (const line of lines.slice(1)) {
    const eq = line.indexOf("=");
    if (line.startsWith("#") || eq < 0) continue;
    const value = unescapeGuestConfigValue(line.slice(eq + 1));
    if (value !== undefined) entries.push({ key: line.slice(0, eq), value });
  }
  return entries;
}

/** The config's escapes (`\\`, `\n`, `\t`, `\xHH`); undefined for a value init would refuse. */
export function unescapeGuestConfigValue(raw: string): string | undefined {
  if (!raw.includes("\\")) return raw;
  const bytes: number[] = [];
  const src = Buffer.from(raw, "utf8");
  for (let i = 0; i < src.length; i++) {
    const c = src[i] as number;
    if (c !== 0x5c) {
      bytes.push(c);
      continue;
    }
    const next = src[++i];
    if (next === 0x5c) bytes.push(0x5c);
    else if (next === 0x6e) bytes.push(0x0a);
    else if (next === 0x74) bytes.push(0x09);
    else if (next === 0x78) {
      const hex = src.subarray(i + 1, i + 3).toString("latin1");
      if (!/^[0-9A-Fa-f]{2}$/.test(hex) || hex === "00") return undefined;
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else return undefined;
  }
  return Buffer.from(bytes).toString("utf8");
}

/**
 * The guest config's drop-ins in the order init reads them: the `*.conf`
 * files of GUEST_CONFIG_DROPIN_DIR, no hidden ones, sorted by bytes.
 */
export function guestConfigDropinPaths(tree: RootfsTree): string[] {
  const dropins = resolveQuietly(tree, GUEST_CONFIG_DROPIN_DIR);
  if (dropins?.kind !== "directory") return [];
  return [...dropins.children.keys()]
    .filter((n) => n.endsWith(".conf") && !n.startsWith("."))
    .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
    .map((name) => `${GUEST_CONFIG_DROPIN_DIR}/${name}`);
}

function resolveQuietly(tree: RootfsTree, path: string): ReturnType<RootfsTree["lookup"]> {
  try {
    return tree.lookup(path);
  } catch {
    return undefined; // a symlink loop or a file used as a directory: no config there
  }
}

async function readText(tree: RootfsTree, path: string): Promise<string | undefined> {
  const inode = resolveQuietly(tree, path);
  if (inode?.kind !== "file") return undefined;
  const data = await withContentBytes(inode.content, path, (src) => src.read(0, MAX_CONFIG_BYTES));
  return data.toString("utf8");
}
