import { cpioOutput } from "./cpio.js";
import { dirOutput } from "./dir.js";
import { erofsOutput } from "./erofs.js";
import { ext4Output } from "./ext4.js";
import type { OutputFormat, OutputWriter } from "./output.js";
import { squashfsOutput } from "./squashfs.js";
import { tarOutput } from "./tar.js";

/** One writer per format; adding a format is one import and one line here. */
export const OUTPUT_WRITERS: Partial<Record<OutputFormat, OutputWriter>> = {
  dir: dirOutput,
  tar: tarOutput,
  cpio: cpioOutput,
  ext4: ext4Output,
  erofs: erofsOutput,
  squashfs: squashfsOutput,
};
