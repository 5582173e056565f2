export { ELF_MACHINES, hostElfMachine, parseElf, readElfContent, readElfFile, type ElfInfo } from "./elf.js";
export { ELF_MAGIC, isElf } from "./magic.js";
