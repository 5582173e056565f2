export { ArchiveFile, DEFAULT_MAX_ENTRIES, inArchive, MAX_META_MEMBER, MAX_NAME_BYTES, MAX_XATTR_VALUE, type ArchiveLimits, type ArchiveSource } from "./archive-file.js";
export { ARCHIVE_CHUNK_BYTES, archiveReadable, ChunkWriter, pumpArchive, pumpArchiveInto, type ArchiveProducer } from "./archive-stream.js";
export { GrowingArchiveFile } from "./growing-archive-file.js";
export { writeArchiveToFile } from "./archive-file-sink.js";
export { writeArchiveFile } from "./write-archive-file.js";
