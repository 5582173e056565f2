export * from "./content.js";
export * from "./content-bytes.js";
export * from "./epoch.js";
export * from "./inode.js";
export * from "./path.js";
export * from "./rootfs-tree.js";
