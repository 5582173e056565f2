// Passed to a child node with --import: records each module the child loads
// (module-trace-hooks.ts) in the file named by A3S_TRACE_MODULES.
import { register } from "node:module";

const out = process.env.A3S_TRACE_MODULES;
if (!out) throw new Error("trace-modules.js needs A3S_TRACE_MODULES, the file to record loaded modules in");
register(new URL("./module-trace-hooks.js", import.meta.url), { data: { out } });
