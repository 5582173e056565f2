import { A3sError } from "../errors.js";

/**
 * A fixed default for SOURCE_DATE_EPOCH: 2000-01-01T00:00:00Z. Any fixed value
 * makes builds reproducible; this one avoids the special meaning some tools
 * give to a zero mtime.
 */
export const DEFAULT_EPOCH = 946684800;

/** SOURCE_DATE_EPOCH from the environment (reproducible-builds.org convention), else the fixed default. */
export function sourceDateEpoch(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw === "") return DEFAULT_EPOCH;
  if (!/^\d{1,12}$/.test(raw)) {
    throw new A3sError("EUSAGE", `SOURCE_DATE_EPOCH must be a whole number of seconds, got ${JSON.stringify(raw)}`);
  }
  return Number(raw);
}
