export { ELF_MACHINES, elfMachineName, hostElfMachine, parseElf, readElfContent, readElfFile, type ElfInfo } from "./elf.js";
export { ELF_MAGIC, isElf } from "./magic.js";
