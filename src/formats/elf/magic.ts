/** "\x7fELF": the first four bytes of every ELF file (executables, libraries, kernel modules). */
export const ELF_MAGIC = 0x7f454c46;

/** Whether the bytes start like an ELF file. */
export function isElf(head: Uint8Array): boolean {
  return head.length >= 4 && head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c && head[3] === 0x46;
}
