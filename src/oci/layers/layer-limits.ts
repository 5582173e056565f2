import { A3sError } from "../../errors.js";
import { DEFAULT_MAX_ENTRIES } from "../../formats/archive/index.js";

/**
 * Bounds on what one image may make us do. Layers are untrusted: a few
 * kilobytes of gzip or zstd can expand to terabytes (a decompression bomb),
 * and a tar of empty headers can name millions of entries. Each bound stops
 * the build with ELIMIT and a hint, and each can be raised for a trusted image.
 */
export interface LayerLimits {
  /** Most bytes one layer may decompress to (default 16 GiB). */
  readonly maxLayerBytes?: number;
  /** Most uncompressed bytes all layers together may have (default 64 GiB). */
  readonly maxImageBytes?: number;
  /** Most tar members in the whole image, extended headers included (default 2,000,000). */
  readonly maxEntries?: number;
}

export type ResolvedLayerLimits = Required<LayerLimits>;

export const DEFAULT_LAYER_LIMITS: ResolvedLayerLimits = {
  maxLayerBytes: 16 * 1024 ** 3,
  maxImageBytes: 64 * 1024 ** 3,
  maxEntries: DEFAULT_MAX_ENTRIES,
};

export function resolveLayerLimits(limits: LayerLimits = {}): ResolvedLayerLimits {
  const out = { ...DEFAULT_LAYER_LIMITS, ...definedOnly(limits) };
  for (const [key, value] of Object.entries(out)) {
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new A3sError("EUSAGE", `layer limit ${key} must be a positive integer, not ${value}`, { subject: key });
    }
  }
  return out;
}

function definedOnly(limits: LayerLimits): LayerLimits {
  return Object.fromEntries(Object.entries(limits).filter(([, v]) => v !== undefined)) as LayerLimits;
}

/** The error every exceeded limit raises, naming the limit so the user knows what to raise. */
export function limitError(what: string, limit: keyof LayerLimits, value: number, subject: string): A3sError {
  return new A3sError("ELIMIT", `${subject}: ${what} exceeds the limit of ${value} (${limit})`, {
    subject,
    hint: `a decompression bomb or a hostile layer; if the image is trusted, raise ${limit}`,
  });
}
