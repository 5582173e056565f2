export { EXT4_BLOCK_SIZE, EXT4_INODE_SIZE } from "./geometry.js";
export { ext4ImageSize, type Ext4Size } from "./image-size.js";
export { EXT4_MAGIC_MISSING, isExt4Image } from "./magic.js";
export { readExt4Image } from "./reader.js";
export { writeExt4Image, type Ext4ImageOptions } from "./writer.js";
