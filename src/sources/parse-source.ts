import { A3sError } from "../errors.js";
import { scratchSource } from "./scratch.js";
import type { RootfsSource } from "./source.js";

/** Source kinds this version understands; more arrive with their own folders. */
const SOURCES: Record<string, (rest: string) => RootfsSource> = {
  scratch: () => scratchSource,
};

/** Parses a source spec such as "scratch" (the default). */
export function parseSourceSpec(spec: string): RootfsSource {
  const colon = spec.indexOf(":");
  const kind = colon < 0 ? spec : spec.slice(0, colon);
  const make = SOURCES[kind];
  if (!make) {
    throw new A3sError("EUSAGE", `unknown source ${JSON.stringify(spec)}; available: ${Object.keys(SOURCES).join(", ")}`, {
      subject: spec,
    });
  }
  return make(colon < 0 ? "" : spec.slice(colon + 1));
}
