export * from "./apply-layout.js";
export * from "./essential-files.js";
export * from "./guest-layout.js";
export * from "./guest-config.js";
export * from "./apply-guest-config.js";
export * from "./read-guest-launch.js";
