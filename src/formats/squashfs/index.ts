export { isSquashfsImage, SQUASHFS_MAGIC_MISSING } from "./magic.js";
export { parsePseudoFile, readSquashfsImage } from "./reader.js";
export { SQUASHFS_ZSTD_LEVEL, writeSquashfsImage, type SquashfsCompression, type SquashfsImageOptions, type SquashfsWriterOptions } from "./writer.js";
