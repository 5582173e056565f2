import { dirOutput } from "./dir.js";
import type { OutputFormat, OutputWriter } from "./output.js";

/** One writer per format; adding a format is one import and one line here. */
export const OUTPUT_WRITERS: Partial<Record<OutputFormat, OutputWriter>> = {
  dir: dirOutput,
};
