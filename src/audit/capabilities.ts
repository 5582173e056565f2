/**
 * File capabilities: the `security.capability` xattr (struct vfs_cap_data in
 * the kernel's uapi capability.h). A file with capabilities gains those
 * privileges when executed, like a setuid-root file but narrower, and `ls -l`
 * does not show it, which is why the audit decodes and names them.
 */

/** Capability names by bit number, as capability.h defines them (CAP_CHOWN = 0 ...). */
const CAPABILITY_NAMES = [
  "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
  "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw", "ipc_lock", "ipc_owner",
  "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
  "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write", "audit_control", "setfcap",
  "mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf",
  "checkpoint_restore",
];

const REVISION_MASK = 0xff000000;
const FLAG_EFFECTIVE = 0x000001;
/** Revision → number of 32-bit {permitted, inheritable} pairs. */
const PAIRS_BY_REVISION: Record<number, number> = { 0x01000000: 1, 0x02000000: 2, 0x03000000: 2 };

export interface FileCapabilities {
  readonly permitted: readonly string[];
  readonly inheritable: readonly string[];
  /** The effective bit: the permitted set is raised at exec without the program asking. */
  readonly effective: boolean;
  /** Revision 3 (namespaced) capabilities: the uid that counts as root for them. */
  readonly rootid?: number;
  /** getcap-style text, e.g. "cap_net_raw=ep". */
  readonly text: string;
}

/** Decodes a security.capability value; undefined when it is not a vfs_cap_data the kernel would accept. */
export function decodeFileCapabilities(value: Uint8Array): FileCapabilities | undefined {
  const b = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (b.length < 4) return undefined;
  const magic = b.readUInt32LE(0);
  const pairs = PAIRS_BY_REVISION[(magic & REVISION_MASK) >>> 0];
  if (pairs === undefined || b.length < 4 + pairs * 8) return undefined;
  const permitted: string[] = [];
  const inheritable: string[] = [];
  for (let word = 0; word < pairs; word++) {
    const p = b.readUInt32LE(4 + word * 8);
    const i = b.readUInt32LE(8 + word * 8);
    for (let bit = 0; bit < 32; bit++) {
      const name = capabilityName(word * 32 + bit);
      if ((p >>> bit) & 1) permitted.push(name);
      if ((i >>> bit) & 1) inheritable.push(name);
    }
  }
  const effective = (magic & FLAG_EFFECTIVE) !== 0;
  const rootid = (magic & REVISION_MASK) >>> 0 === 0x03000000 && b.length >= 24 ? b.readUInt32LE(20) : undefined;
  return {
    permitted,
    inheritable,
    effective,
    ...(rootid === undefined ? {} : { rootid }),
    text: capabilityText(permitted, inheritable, effective),
  };
}

function capabilityName(bit: number): string {
  return `cap_${CAPABILITY_NAMES[bit] ?? bit}`;
}

/** "cap_a,cap_b=ep cap_c=i", grouping capabilities that have the same flags. */
function capabilityText(permitted: readonly string[], inheritable: readonly string[], effective: boolean): string {
  const groups = new Map<string, string[]>();
  for (const name of new Set([...permitted, ...inheritable])) {
    const flags = (effective && permitted.includes(name) ? "e" : "") +
      (inheritable.includes(name) ? "i" : "") +
      (permitted.includes(name) ? "p" : "");
    groups.set(flags, [...(groups.get(flags) ?? []), name]);
  }
  if (groups.size === 0) return "(empty)";
  return [...groups].map(([flags, names]) => `${names.join(",")}=${flags}`).join(" ");
}
