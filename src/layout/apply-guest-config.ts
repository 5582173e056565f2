import { bytesContent, type ContentRef, type RootfsTree } from "../tree/index.js";
import { defaultShares, GUEST_CONFIG_PATH, parseUserSpec, renderGuestConfig } from "./guest-config.js";
import type { GuestLayout } from "./guest-layout.js";

/** How the agent is started, baked into the image's guest config. */
export interface AgentSettings {
  readonly args?: readonly string[];
  readonly env?: readonly string[];
  /** "root", "nobody", "UID" or "UID:GID". */
  readonly user?: string;
}

/**
 * Checks the agent's settings the way the guest config will, before anything
 * is built: an env entry that is not NAME=VALUE, a user that is not root,
 * nobody, UID or UID:GID, or an argument the guest cannot carry fails now,
 * not after a source has been downloaded. The errors are the config
 * writer's own (ECONFIG, EUSAGE for a user).
 */
export function checkAgentSettings(settings: AgentSettings): void {
  renderGuestConfig({
    agent: "/",
    ...(settings.args?.length ? { args: [...settings.args] } : {}),
    ...(settings.env?.length ? { env: [...settings.env] } : {}),
    ...(settings.user === undefined ? {} : { user: parseUserSpec(settings.user) }),
  });
}

/**
 * How the agent starts when the source knows (an image's Entrypoint, Cmd,
 * Env, WorkingDir and User). Used when the build is not given an agent.
 */
export interface AgentDefaults {
  /** Absolute path of the program inside the tree. */
  readonly path?: string;
  readonly args?: readonly string[];
  readonly env?: readonly string[];
  readonly cwd?: string;
  /** "UID", "UID:GID", "root" or "nobody" (names other than these are resolved by the source). */
  readonly user?: string;
}

/** Everything the config says about starting the agent. */
export interface AgentLaunch extends AgentSettings {
  /** Absolute path of the agent in the guest. */
  readonly path: string;
  /** Working directory; default: the workspace. */
  readonly cwd?: string;
}

/**
 * Installs the init and the guest config (docs/guest-protocol.md): the init
 * at /sbin/init, where the kernel looks on a disk root, and /init pointing at
 * it, where the kernel looks in an initramfs. The config names the agent, its
 * arguments, environment, user and working directory (the workspace), the
 * hostname, and the shares as optional, so the image also boots without them.
 */
export function applyGuestConfig(
  tree: RootfsTree,
  layout: GuestLayout,
  agent: AgentLaunch,
  init: ContentRef | undefined,
): void {
  if (init) {
    tree.addFile("/sbin/init", init, { mode: 0o755 });
    tree.addSymlink("/init", "sbin/init");
  }
  const config = renderGuestConfig({
    agent: agent.path,
    ...(agent.args?.length ? { args: [...agent.args] } : {}),
    ...(agent.env?.length ? { env: [...agent.env] } : {}),
    cwd: agent.cwd ?? layout.workspacePath,
    user: parseUserSpec(agent.user ?? "root"),
    hostname: layout.hostname,
    shares: defaultShares(layout),
  });
  tree.addFile(GUEST_CONFIG_PATH, bytesContent(config), { mode: 0o644 });
}
