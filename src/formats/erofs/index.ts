export { EROFS_MAGIC_MISSING, isErofsImage } from "./magic.js";
export { readErofsImage } from "./reader.js";
export { EROFS_LZ4HC_LEVEL, writeErofsImage, type ErofsCompression, type ErofsImageOptions, type ErofsWriterOptions } from "./writer.js";
