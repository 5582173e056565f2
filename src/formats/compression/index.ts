export { compressionForPath, GZIP_LEVEL, INITRAMFS_GZIP_LEVEL, openCompressingFile, ZSTD_LEVEL, type CompressingFile } from "./compress.js";
export { decompress, decompressToFile, type DecompressOptions } from "./decompress.js";
export { COMPRESSION_MAGIC_MISSING, compressionMagic, isCompression, supportedCompression, type Compression, type UnsupportedCompression } from "./magic.js";
export { findIgzip, igzipFile, type Igzip, type IgzipFileOptions } from "./igzip.js";
