import { DEFAULT_AGENT_PATH, GUEST_CONFIG_PATH, guestConfigDropinPaths, guestConfigEntries } from "../layout/index.js";
import type { RootfsTree } from "../tree/index.js";
import { readTreeText } from "./tree-files.js";

/** What the audit needs from the guest config baked into a rootfs (docs/guest-protocol.md §3). */
export interface GuestFacts {
  /** True when the rootfs has /etc/a3s/guest.conf, i.e. it was built as an A3S guest. */
  readonly configured: boolean;
  /** The agent init will start: the config's (or a drop-in's) `agent=`, else the default path. */
  readonly agentPath: string;
  /** Mount points of the shares the config names; undefined when it names none. */
  readonly sharePaths?: readonly string[];
  /** The shares the config names, with their tags (empty when it names none). */
  readonly shares: readonly { readonly tag: string; readonly path: string }[];
}

/**
 * Reads `agent` and `share` from guest.conf and its drop-ins, with the
 * guest's rules: a drop-in's `agent` wins, a drop-in with any `share` lines
 * replaces the earlier ones, drop-ins are read in byte order of their names
 * and names starting with "." are skipped. Lines the guest would reject are
 * skipped here rather than failing the audit: init reports those at boot,
 * and the audit's job is to describe the rest.
 */
export async function readGuestFacts(tree: RootfsTree): Promise<GuestFacts> {
  const main = await readTreeText(tree, GUEST_CONFIG_PATH);
  if (main === undefined) return { configured: false, agentPath: DEFAULT_AGENT_PATH, shares: [] };
  let agentPath = DEFAULT_AGENT_PATH;
  let sharePaths: string[] | undefined;
  let shareList: { tag: string; path: string }[] = [];
  const apply = (text: string): void => {
    const entries = guestConfigEntries(text);
    if (entries === undefined) return;
    const shares: string[] = [];
    const tagged: { tag: string; path: string }[] = [];
    for (const { key, value } of entries) {
      if (key === "agent" && value.startsWith("/")) agentPath = value;
      if (key === "share") {
        const [tag, path] = value.split(":");
        if (path?.startsWith("/")) {
          shares.push(path);
          tagged.push({ tag: tag ?? "", path });
        }
      }
    }
    if (shares.length > 0) {
      sharePaths = shares;
      shareList = tagged;
    }
  };
  apply(main);
  for (const path of guestConfigDropinPaths(tree)) {
    const text = await readTreeText(tree, path);
    if (text !== undefined) apply(text);
  }
  return { configured: true, agentPath, shares: shareList, ...(sharePaths ? { sharePaths } : {}) };
}
