import { A3sError } from "../errors.js";
import { HOSTNAME_MAX_BYTES, type GuestLayout } from "./guest-layout.js";

/**
 * The host's writer of the guest config (docs/guest-protocol.md §3, §4): the
 * one place on the host that knows the format the guest init parses. Every
 * value is checked here, so that a bad one is a build or run error naming
 * the key, not a setup failure (status 125) inside a booted VM.
 */

export const GUEST_CONFIG_PATH = "/etc/a3s/guest.conf";
/** Drop-ins, read after GUEST_CONFIG_PATH in byte order of their names. */
export const GUEST_CONFIG_DROPIN_DIR = "/etc/a3s/guest.conf.d";

const CONFIG_MAGIC = "a3s-guest-config";
/**
 * The guest protocol version the images this a3s-rootfs builds speak
 * (docs/guest-protocol.md §13): their init reads config files of versions 1
 * to this one and takes its job from the host. Pushed images and artifacts
 * carry it (the vnd.a3s.rootfs.layout.version label and annotation).
 */
export const GUEST_PROTOCOL_VERSION = 2;
/** The line that ends a job on the control channel (docs/guest-protocol.md §8). */
const JOB_END = "end";
const CONFIG_MAX_BYTES = 1 << 20;
/** init's parse_id takes decimal ids below 2^32-1 ((uid_t)-1 means "unchanged" to the kernel). */
const ID_MAX = 0xfffffffe;

export interface GuestShare {
  /** The host's export tag (virtio-fs tag or 9p mount_tag). */
  tag: string;
  /** Absolute mount point in the guest; it must exist in the image. */
  path: string;
  readOnly: boolean;
  /** Skip the share when the host does not provide the tag. */
  optional: boolean;
}

/** The agent's command and identity: what both the image's config and a run's job may set. */
export interface GuestCommand {
  agent?: string;
  args?: string[];
  env?: string[];
  cwd?: string;
  user?: { uid: number; gid: number };
  groups?: number[];
  hostname?: string;
  debug?: boolean;
}

/** The keys of a guest config; an unset key is not written (the guest default applies). */
export interface GuestConfig extends GuestCommand {
  shares?: GuestShare[];
  modules?: string[];
  root?: string;
  rootfstype?: string;
  rootflags?: string;
  /** The root's dm-verity parameters, `ROOTHASH:SALT:DATABLOCKS:HASHSTART` (§3). */
  rootverity?: string;
  stdin?: string;
  stdout?: string;
  stderr?: string;
  control?: string;
  /** Version 2: init waits at the ready point for its job from the host (§8). */
  job?: boolean;
}

/**
 * What one run asks of a machine that is set up and waiting (§8): the
 * agent's command and identity, the shares the host provides, and the
 * machine's own per-run state, which a snapshot would otherwise share
 * with every machine restored from it.
 */
export interface GuestJob extends GuestCommand {
  /** The tags of the shares the host provides; the image's other shares are skipped. */
  providedShares: string[];
  /** Bytes for the guest's random pool (16 to 512), added and reseeded before anything else. */
  entropy: Buffer;
  /** The host's wall clock when the job is sent, ms since the Unix epoch. */
  clockMs: number;
  /** Overlay mode (docs/guest-protocol.md §8): the share with this tag is mounted read-only under an overlay whose writes come back as a change set. */
  overlay?: string;
  /** The virtio serial of a scratch disk that holds the overlay's upper layer (else a tmpfs). */
  scratch?: string;
  /** Guest-local tmpfs volumes, "PATH" or "PATH:SIZE" (SIZE as tmpfs's size=: digits and k, m, g or %). */
  tmpfs?: string[];
}

/** Keys init accepts as a3s.KEY=VALUE on the kernel command line (§4). */
const CMDLINE_KEYS = new Set([
  "agent", "arg", "env", "cwd", "user", "groups", "hostname", "share", "root", "rootfstype", "rootflags", "rootverity", "debug", "job",
  "stdout", "stderr", "control",
]);
const PATH_KEYS = new Set(["agent", "cwd", "stdin", "stdout", "stderr", "control"]);

/**
 * One config file's text: the header, then only the keys that are set, in
 * the order the guest's parser prints them back (guest/build/config-check
 * echoes a rendered config unchanged).
 */
export function renderGuestConfig(cfg: GuestConfig): string {
  const lines = [`${CONFIG_MAGIC} ${cfg.job !== undefined ? 2 : 1}`];
  const put = (key: string, value: string): void => {
    lines.push(`${key}=${escapeConfigValue(value)}`);
  };
  const putPath = (key: string, value: string | undefined): void => {
    if (value !== undefined) put(key, checkAbsolute(key, value));
  };

  putPath("agent", cfg.agent);
  for (const a of cfg.args ?? []) put("arg", a);
  for (const e of cfg.env ?? []) put("env", checkEnv(e));
  putPath("cwd", cfg.cwd);
  if (cfg.user) put("user", `${checkId("user", cfg.user.uid)}:${checkId("user", cfg.user.gid)}`);
  if (cfg.groups) put("groups", cfg.groups.map((g) => checkId("groups", g)).join(","));
  if (cfg.hostname !== undefined) put("hostname", checkHostname(cfg.hostname));
  for (const s of cfg.shares ?? []) put("share", shareValue(s));
  for (const m of cfg.modules ?? []) put("module", checkAbsolute("module", m));
  if (cfg.root !== undefined) put("root", cfg.root === "" ? "" : checkAbsolute("root", cfg.root));
  if (cfg.rootfstype !== undefined) put("rootfstype", cfg.rootfstype);
  if (cfg.rootflags !== undefined) put("rootflags", cfg.rootflags);
  if (cfg.rootverity !== undefined) put("rootverity", cfg.rootverity);
  putPath("stdin", cfg.stdin);
  putPath("stdout", cfg.stdout);
  putPath("stderr", cfg.stderr);
  putPath("control", cfg.control);
  if (cfg.debug !== undefined) put("debug", cfg.debug ? "1" : "0");
  if (cfg.job !== undefined) put("job", cfg.job ? "1" : "0");

  const text = lines.join("\n") + "\n";
  if (Buffer.byteLength(text) > CONFIG_MAX_BYTES) {
    throw new A3sError("ECONFIG", `the guest config would be ${Buffer.byteLength(text)} bytes, over the 1 MiB init reads`, {
      subject: GUEST_CONFIG_PATH,
    });
  }
  return text;
}

/**
 * A job as the host writes it on the control channel (§8): a version 2
 * config of the keys a job may set, in the parser's order, then a line
 * "end". Only the keys that are set are written, so the image's config
 * keeps the rest.
 */
export function renderGuestJob(job: GuestJob): string {
  if (job.entropy.length < 16 || job.entropy.length > 512) {
    throw new A3sError("ECONFIG", `a job's entropy must be 16 to 512 bytes, not ${job.entropy.length}`);
  }
  const lines = [`${CONFIG_MAGIC} 2`];
  const put = (key: string, value: string): void => {
    lines.push(`${key}=${escapeConfigValue(value)}`);
  };
  if (job.agent !== undefined) put("agent", checkAbsolute("agent", job.agent));
  for (const a of job.args ?? []) put("arg", a);
  for (const e of job.env ?? []) put("env", checkEnv(e));
  if (job.cwd !== undefined) put("cwd", checkAbsolute("cwd", job.cwd));
  if (job.user) put("user", `${checkId("user", job.user.uid)}:${checkId("user", job.user.gid)}`);
  if (job.groups) put("groups", job.groups.map((g) => checkId("groups", g)).join(","));
  if (job.hostname !== undefined) put("hostname", checkHostname(job.hostname));
  if (job.debug !== undefined) put("debug", job.debug ? "1" : "0");
  for (const tag of job.providedShares) checkTag(tag);
  put("shares", job.providedShares.join(","));
  put("entropy", job.entropy.toString("hex"));
  const ms = Math.max(0, Math.floor(job.clockMs));
  put("clock", `${Math.floor(ms / 1000)}.${String(ms % 1000).padStart(3, "0")}`);
  if (job.overlay !== undefined) put("overlay", checkTag(job.overlay));
  if (job.scratch !== undefined) put("scratch", checkScratchSerial(job.scratch));
  for (const t of job.tmpfs ?? []) put("tmpfs", checkTmpfsVolume(t));
  lines.push(JOB_END);
  const text = lines.join("\n") + "\n";
  if (Buffer.byteLength(text) > CONFIG_MAX_BYTES) {
    throw new A3sError("ECONFIG", `the job would be ${Buffer.byteLength(text)} bytes, over the 1 MiB init reads`, {
      hint: "bake long arguments and environment into the image with a3s-rootfs build --agent-args/--env",
    });
  }
  return text;
}

/**
 * A value in the config's canonical escapes: `\\`, `\n`, `\t`, and `\xHH`
 * for the other control bytes. Everything else, UTF-8 included, is written
 * as is: values are never trimmed, so spaces and `=` need nothing.
 */
export function escapeConfigValue(v: string): string {
  checkText("value", v);
  let out = "";
  for (const ch of v) {
    const c = ch.codePointAt(0) ?? 0;
    if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\t") out += "\\t";
    else if (c < 0x20 || c === 0x7f) out += `\\x${hex(c)}`;
    else out += ch;
  }
  return out;
}

/**
 * One `a3s.KEY=VALUE` kernel parameter. Every byte of the UTF-8 value
 * outside printable ASCII, and `"`, becomes `\xHH` (and `\` becomes `\\`),
 * so the token has no space and no quote: the kernel's own parser, which
 * also splits on byte 0xA0 (found inside UTF-8), sees one unbroken token.
 */
export function kernelCmdlineArg(key: string, value: string): string {
  if (!CMDLINE_KEYS.has(key)) {
    throw new A3sError("ECONFIG", `"${key}" cannot be set on the kernel command line`, {
      subject: key,
      hint: `the keys are ${[...CMDLINE_KEYS].join(", ")}`,
    });
  }
  checkText(key, value);
  if (PATH_KEYS.has(key)) checkAbsolute(key, value);
  if (key === "env") checkEnv(value);
  let out = `a3s.${key}=`;
  for (const b of Buffer.from(value, "utf8")) {
    if (b === 0x5c) out += "\\\\";
    else if (b > 0x20 && b < 0x7f && b !== 0x22) out += String.fromCharCode(b);
    else out += `\\x${hex(b)}`;
  }
  return out;
}

/** `root`, `nobody`, `UID` (gid = uid) or `UID:GID`, decimal: the guest has no passwd lookup. */
export function parseUserSpec(spec: string): { uid: number; gid: number } {
  if (spec === "root") return { uid: 0, gid: 0 };
  if (spec === "nobody") return { uid: 65534, gid: 65534 };
  const m = /^(\d{1,10})(?::(\d{1,10}))?$/.exec(spec);
  const uid = Number(m?.[1]);
  const gid = m?.[2] === undefined ? uid : Number(m[2]);
  if (!m || uid > ID_MAX || gid > ID_MAX) {
    throw new A3sError("EUSAGE", `invalid user ${JSON.stringify(spec)}`, {
      subject: spec,
      hint: "use root, nobody, UID or UID:GID (decimal numbers; the guest has no user names)",
    });
  }
  return { uid, gid };
}

/** The builder's shares: the host project (read-write) and skills (read-only), both optional. */
export function defaultShares(layout: Pick<GuestLayout, "workspacePath" | "skillsPath">): GuestShare[] {
  return [
    { tag: "workspace", path: layout.workspacePath, readOnly: false, optional: true },
    { tag: "skills", path: layout.skillsPath, readOnly: true, optional: true },
  ];
}

function checkTag(tag: string): string {
  // init splits TAG:PATH:OPTS at ':' after unescaping, so no escape can
  // carry a ':' in the tag or path; ',' would read as a separator.
  if (tag === "" || /[:,]/.test(tag)) {
    throw new A3sError("ECONFIG", `share tag ${JSON.stringify(tag)} must be non-empty, without ':' or ','`, {
      subject: tag,
    });
  }
  return checkText("share", tag);
}

function shareValue(s: GuestShare): string {
  checkTag(s.tag);
  if (checkAbsolute("share", s.path).includes(":")) {
    throw new A3sError("ECONFIG", `share path ${JSON.stringify(s.path)} contains ':', which the guest cannot parse`, {
      subject: s.path,
    });
  }
  return `${s.tag}:${s.path}:${s.readOnly ? "ro" : "rw"}${s.optional ? ",optional" : ""}`;
}

/** NUL cannot pass execve or the config (\x00 is refused); a lone surrogate has no UTF-8 form. */
function checkText(key: string, v: string): string {
  if (v.includes("\0")) {
    throw new A3sError("ECONFIG", `${key}: ${JSON.stringify(v)} contains a NUL byte, which the guest cannot carry`, {
      subject: key,
    });
  }
  if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(v)) {
    throw new A3sError("ECONFIG", `${key}: ${JSON.stringify(v)} is not valid Unicode (a lone surrogate)`, { subject: key });
  }
  return v;
}

function checkAbsolute(key: string, path: string): string {
  checkText(key, path);
  if (!path.startsWith("/")) {
    throw new A3sError("ECONFIG", `${key}: ${JSON.stringify(path)} is not an absolute path`, {
      subject: path,
      hint: "guest paths start with /",
    });
  }
  return path;
}

function checkEnv(entry: string): string {
  checkText("env", entry);
  if (entry.indexOf("=") < 1) {
    throw new A3sError("ECONFIG", `env: ${JSON.stringify(entry)} is not NAME=VALUE`, { subject: entry });
  }
  return entry;
}

function checkId(key: string, id: number): number {
  if (!Number.isInteger(id) || id < 0 || id > ID_MAX) {
    throw new A3sError("ECONFIG", `${key}: ${id} is not a uid/gid (an integer from 0 to ${ID_MAX})`, { subject: key });
  }
  return id;
}

function checkHostname(name: string): string {
  checkText("hostname", name);
  if (Buffer.byteLength(name) > HOSTNAME_MAX_BYTES) {
    throw new A3sError("ECONFIG", `hostname ${JSON.stringify(name)} is longer than ${HOSTNAME_MAX_BYTES} bytes`, {
      subject: name,
    });
  }
  return name;
}

function hex(b: number): string {
  return b.toString(16).padStart(2, "0");
}

/** A scratch disk's virtio serial as init's scratch= key takes it: 1 to 20 of A-Z a-z 0-9 . _ - (virtio-blk keeps 20 bytes). */
function checkScratchSerial(serial: string): string {
  if (!/^[A-Za-z0-9._-]{1,20}$/.test(serial)) {
    throw new A3sError("ECONFIG", `scratch disk serial ${JSON.stringify(serial)} must be 1 to 20 of A-Z a-z 0-9 . _ -`, { subject: serial });
  }
  return serial;
}

/**
 * A tmpfs volume as init's tmpfs= key takes it: an absolute PATH, then
 * optionally ":SIZE" with SIZE as tmpfs's size= (digits, then k, m, g or
 * %); no ".." (the mount point is made if missing, and must be where it says).
 */
export function checkTmpfsVolume(volume: string): string {
  const colon = volume.indexOf(":");
  const path = colon < 0 ? volume : volume.slice(0, colon);
  const size = colon < 0 ? undefined : volume.slice(colon + 1);
  if (!path.startsWith("/") || path === "/" || path.split("/").includes("..")) {
    throw new A3sError("ECONFIG", `tmpfs volume ${JSON.stringify(volume)}: GUESTPATH must be an absolute path other than / and without ".."`, { subject: volume });
  }
  if (size !== undefined && !/^[0-9]+[kKmMgG%]?$/.test(size)) {
    throw new A3sError("ECONFIG", `tmpfs volume ${JSON.stringify(volume)}: SIZE must be a number with an optional k, m, g or % (as tmpfs's size=), e.g. 512m`, {
      subject: volume,
    });
  }
  return checkText("tmpfs", volume);
}
