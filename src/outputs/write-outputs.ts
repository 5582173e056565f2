import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { resolve } from "node:path";
import { A3sError } from "../errors.js";
import type { RootfsTree } from "../tree/index.js";
import { writeAtomically } from "./atomic.js";
import { OUTPUT_FORMATS, type OutputContext, type OutputFormat, type OutputResult, type OutputSpec } from "./output.js";
import { createOciLayoutWriter, describeLayoutOutput, parseOciLayoutSpec } from "./oci-layout-output.js";
import { OUTPUT_WRITERS } from "./registry.js";
import { parseRegistryOutputSpec, pushOutput } from "./registry-output.js";

/** Parses `FORMAT:PATH` as given to `-o`; also `oci:DIR[:TAG]`, `docker://REF` and `FORMAT:docker://REF`. */
export function parseOutputSpec(spec: string): OutputSpec {
  const distribution = parseRegistryOutputSpec(spec) ?? parseOciLayoutSpec(spec);
  if (distribution) return distribution;
  const colon = spec.indexOf(":");
  const format = colon > 0 ? spec.slice(0, colon) : "";
  const path = colon > 0 ? spec.slice(colon + 1) : "";
  if (!(OUTPUT_FORMATS as readonly string[]).includes(format) || path === "") {
    throw new A3sError("EUSAGE", `invalid output ${JSON.stringify(spec)}: expected FORMAT:PATH, FORMAT one of ${OUTPUT_FORMATS.join(", ")}`, {
      subject: spec,
    });
  }
  return { format: format as OutputFormat, path };
}

/**
 * Writes each output in turn, each to a temporary path published by rename
 * only when it is complete. An output that fails leaves its path as it was.
 */
export async function writeOutputs(
  tree: RootfsTree,
  specs: readonly OutputSpec[],
  ctx: OutputContext,
): Promise<OutputResult[]> {
  const results: OutputResult[] = [];
  for (const spec of specs) {
    // Pushed outputs are written in a scratch directory and sent (registry-output.ts).
    if (spec.push) {
      results.push(await pushOutput(tree, spec, ctx));
      continue;
    }
    const writer = spec.format === "oci" ? createOciLayoutWriter(spec) : OUTPUT_WRITERS[spec.format];
    if (!writer) throw new A3sError("EUSAGE", `output format ${spec.format} is not available`, { subject: spec.format });
    const final = resolve(spec.path);
    await writeAtomically(final, (tmp) => writer.write(tree, { tmp, final }, ctx));
    results.push(spec.format === "oci" ? await describeLayoutOutput(final) : await describeOutput(spec.format, final, tree));
  }
  return results;
}

async function describeOutput(format: OutputFormat, path: string, tree: RootfsTree): Promise<OutputResult> {
  if (format === "dir") return { format, path, bytes: tree.contentBytes(), sha256: null };
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return { format, path, bytes: (await stat(path)).size, sha256: hash.digest("hex") };
}
