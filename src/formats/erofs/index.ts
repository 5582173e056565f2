export { EROFS_MAGIC_MISSING, isErofsImage } from "./magic.js";
export { readErofsImage } from "./reader.js";
export { writeErofsImage, type ErofsCompression, type ErofsImageOptions, type ErofsWriterOptions } from "./writer.js";
