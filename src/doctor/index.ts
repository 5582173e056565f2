export * from "./check-host.js";
export * from "./fix-host.js";
export * from "./host-system.js";
export * from "./requirements.js";
export * from "./ensure-host.js";
