export { encodePaxRecords, padding, TAR_TYPE, writeTarHeader, type TarHeaderFields } from "./header.js";
export { hasUstarMagic, isTarHeader, TAR_BLOCK, TAR_MAGIC_MISSING } from "./magic.js";
export { addTarMember, readTarInto, readTarMembers, type TarMember, type TarMemberKind } from "./reader.js";
export { TAR_RECORD, tarFeed, tarMemberName, tarProducer, tarStream, writeTarStream } from "./writer.js";
