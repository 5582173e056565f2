export * from "./apply-layout.js";
export * from "./essential-files.js";
export * from "./guest-layout.js";
