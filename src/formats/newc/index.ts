export { CPIO_MAGIC_MISSING, cpioMagic, NEWC_MAGIC, odcRefused } from "./magic.js";
export { readCpioInto } from "./reader.js";
export { cpioProducer, cpioStream, type CpioOptions } from "./writer.js";
