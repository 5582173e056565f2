export * from "./check-agent.js";
export * from "./find-agent-binary.js";
export * from "./guest-programs.js";
