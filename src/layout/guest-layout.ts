import { A3sError } from "../errors.js";
import { normaliseRootfsPath } from "../tree/index.js";

/**
 * The guest contract: where the agent, the shares and the essential files
 * live inside the rootfs. The builder writes it; the boot path and the guest
 * init read the same values, so they are defined once, here.
 */
export interface GuestLayout {
  /** Where the agent binary is installed; mode 0755. */
  readonly agentPath: string;
  /** Mount point of the host project (virtio-fs tag "workspace", read-write). */
  readonly workspacePath: string;
  /** Mount point of the host skills (virtio-fs tag "skills", read-only). */
  readonly skillsPath: string;
  /** Written to /etc/hostname. */
  readonly hostname: string;
  /** Nameservers for /etc/resolv.conf; an empty list writes a resolv.conf with none. */
  readonly dns: readonly string[];
  /** More directories to create (mode defaults to 0755). */
  readonly extraDirectories: readonly { path: string; mode?: number }[];
  /** More files to create (mode defaults to 0644). */
  readonly extraFiles: readonly { path: string; content: string | Uint8Array; mode?: number }[];
}

export const DEFAULT_AGENT_PATH = "/a3s/agent/a3s-box-code";
/** Linux's limit on a hostname (HOST_NAME_MAX, __NEW_UTS_LEN): sethostname(2) refuses a longer one, and init checks the same. */
export const HOSTNAME_MAX_BYTES = 64;
/** The guest's hostname unless one is given; the guest init uses the same default. */
export const DEFAULT_HOSTNAME = "a3s-box";

export const DEFAULT_LAYOUT: GuestLayout = {
  agentPath: DEFAULT_AGENT_PATH,
  workspacePath: "/workspace",
  skillsPath: "/skills",
  hostname: DEFAULT_HOSTNAME,
  dns: ["8.8.8.8", "8.8.4.4"],
  extraDirectories: [],
  extraFiles: [],
};

/**
 * Files the A3S layer writes itself: the init (and /init, its link), the
 * essential /etc files (essential-files.ts), and everything under /etc/a3s,
 * the guest config's directory (guest-config.ts). An agent path on one of
 * them would replace the file the guest needs, or be replaced by it.
 */
export const RESERVED_GUEST_FILES: readonly string[] = [
  "/sbin/init",
  "/init",
  "/etc/passwd",
  "/etc/group",
  "/etc/hosts",
  "/etc/resolv.conf",
  "/etc/nsswitch.conf",
  "/etc/hostname",
];
export const RESERVED_GUEST_DIRECTORY = "/etc/a3s";

/**
 * The mount point that hides `path` in a booted guest with this layout, or
 * undefined when none does.
 */
export function mountHiding(path: string, layout: Pick<GuestLayout, "workspacePath" | "skillsPath">): string | undefined {
  return [...INIT_MOUNTS.map((m) => m.path), layout.workspacePath, layout.skillsPath].find((m) => path === m || path.startsWith(m + "/"));
}

/**
 * The directories every A3S guest has. /tmp and /var/tmp are 1777 so any
 * user can create files there (init mounts tmpfs over them at boot, but the
 * mode on the read-only root is what a disk boot without init sees).
 */
export function layoutDirectories(layout: GuestLayout): { path: string; mode: number }[] {
  const agentDir = layout.agentPath.slice(0, layout.agentPath.lastIndexOf("/")) || "/";
  const dirs: { path: string; mode: number }[] = [
    { path: agentDir, mode: 0o755 },
    { path: layout.workspacePath, mode: 0o755 },
    { path: layout.skillsPath, mode: 0o755 },
    { path: "/dev", mode: 0o755 },
    { path: "/proc", mode: 0o755 },
    { path: "/sys", mode: 0o755 },
    { path: "/etc", mode: 0o755 },
    { path: "/tmp", mode: 0o1777 },
    { path: "/run", mode: 0o755 },
    { path: "/var/tmp", mode: 0o1777 },
    { path: "/var/log", mode: 0o755 },
    { path: "/sbin", mode: 0o755 },
    { path: "/root", mode: 0o755 },
  ];
  for (const d of layout.extraDirectories) dirs.push({ path: d.path, mode: d.mode ?? 0o755 });
  return dirs;
}

/**
 * What the guest init mounts at boot whatever the config says
 * (docs/guest-protocol.md §10), each over a directory of the image: anything
 * the image holds below one of these is hidden in the running guest. The
 * shares the config names are mounted too, over their own paths.
 */
export const INIT_MOUNTS: readonly { readonly path: string; readonly what: string }[] = [
  { path: "/dev", what: "devtmpfs" },
  { path: "/proc", what: "proc" },
  { path: "/sys", what: "sysfs" },
  { path: "/tmp", what: "a tmpfs" },
  { path: "/run", what: "a tmpfs" },
  { path: "/var/tmp", what: "a tmpfs" },
  { path: "/var/log", what: "a tmpfs" },
];

/** Fills defaults and checks every path and value before anything is built. */
export function resolveLayout(overrides: Partial<GuestLayout> = {}): GuestLayout {
  const layout = { ...DEFAULT_LAYOUT, ...overrides };
  const paths = {
    agentPath: normaliseRootfsPath(layout.agentPath),
    workspacePath: normaliseRootfsPath(layout.workspacePath),
    skillsPath: normaliseRootfsPath(layout.skillsPath),
  };
  checkAgentPath(paths.agentPath, { ...layout, ...paths });
  if (!/^[A-Za-z0-9][A-Za-z0-9.-]*$/.test(layout.hostname) || layout.hostname.length > HOSTNAME_MAX_BYTES) {
    throw new A3sError("ELAYOUT", `invalid hostname ${JSON.stringify(layout.hostname)}`, {
      hint: `use letters, digits, '-' and '.', at most ${HOSTNAME_MAX_BYTES} characters`,
    });
  }
  for (const ip of layout.dns) {
    if (!isIpAddress(ip)) throw new A3sError("ELAYOUT", `invalid DNS server address ${JSON.stringify(ip)}`);
  }
  return { ...layout, ...paths };
}

/**
 * The agent path must name a file the guest can run: not "/", not a
 * directory of the layout, not a file the A3S layer writes, and not where a
 * mount hides it at boot (the image's /proc/agent is never seen once proc is
 * mounted there).
 */
function checkAgentPath(agentPath: string, layout: GuestLayout): void {
  const refuse = (why: string): never => {
    throw new A3sError("ELAYOUT", `the agent path ${agentPath} ${why}`, {
      subject: agentPath,
      hint: `choose a path of its own, such as the default ${DEFAULT_AGENT_PATH}`,
    });
  };
  if (agentPath === "/") refuse("must name a file, not /");
  const hidden = mountHiding(agentPath, layout);
  if (hidden) refuse(`is ${hidden === agentPath ? "" : "under "}${hidden}, where the guest mounts ${mountWhat(hidden, layout)} at boot and would hide the agent`);
  if (RESERVED_GUEST_FILES.includes(agentPath)) refuse("is a file the A3S layer writes itself (the init or an essential /etc file)");
  if (agentPath === RESERVED_GUEST_DIRECTORY || agentPath.startsWith(RESERVED_GUEST_DIRECTORY + "/")) {
    refuse(`is under ${RESERVED_GUEST_DIRECTORY}, which holds the guest config`);
  }
  if (layoutDirectories({ ...layout, agentPath: DEFAULT_AGENT_PATH }).some((d) => d.path === agentPath)) {
    refuse("is a directory of the guest layout");
  }
}

function mountWhat(mount: string, layout: Pick<GuestLayout, "workspacePath" | "skillsPath">): string {
  if (mount === layout.workspacePath) return "the workspace share";
  if (mount === layout.skillsPath) return "the skills share";
  return INIT_MOUNTS.find((m) => m.path === mount)?.what ?? "a filesystem";
}

function isIpAddress(s: string): boolean {
  const v4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
  return v4.test(s) || (/^[0-9A-Fa-f:.]+$/.test(s) && s.includes(":"));
}
