import { stat } from "node:fs/promises";
import { A3sError } from "../errors.js";
import type { RootfsTree } from "../tree/index.js";
import { fileSha256, type FileDigest } from "../util/file-sha256.js";
import { writeAtomically } from "./atomic.js";
import { parseOciLayoutSpec } from "./oci-layout-spec.js";
import { OUTPUT_FORMATS, type OutputContext, type OutputFormat, type OutputResult, type OutputSpec, type OutputWriter } from "./output.js";
import { explainOutputError } from "./output-errors.js";
import { checkOutputTargets, checkReplaceable, type OutputTarget } from "./output-target.js";
import { OUTPUT_WRITERS, outputWriterFor } from "./registry.js";
import { parseRegistryOutputSpec } from "./registry-output-spec.js";
import { addVerityTree, removeStaleVerityRecord, VERITY_FORMATS } from "./verity-output.js";

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
 * only when it is complete. Every path is checked first (checkOutputTargets:
 * nothing a3s-rootfs did not write is replaced, no two outputs share a path),
 * and again just before its rename. An output that fails, or is cancelled
 * through `ctx.signal`, leaves its path as it was; outputs published before
 * it stay published. Errors name the user's path and the cause. Pushed
 * outputs write nothing beside the user's files: they are made in the
 * build's scratch directory and sent (registry-output.ts).
 */
export async function writeOutputs(
  tree: RootfsTree,
  specs: readonly OutputSpec[],
  ctx: OutputContext,
): Promise<OutputResult[]> {
  for (const spec of specs) {
    if (!OUTPUT_WRITERS[spec.format]) throw new A3sError("EUSAGE", `output format ${spec.format} is not available`, { subject: spec.format });
  }
  const force = { force: ctx.force ?? false };
  // Targets come back for the local outputs only, in their order.
  const targets = await checkOutputTargets(specs, force);
  const results: OutputResult[] = [];
  let next = 0;
  for (const spec of specs) {
    ctx.signal?.throwIfAborted();
    if (spec.push) {
      // Loaded only by a build that pushes: other builds never need the registry client (CLI start time).
      const { pushOutput } = await import("./registry-output.js");
      results.push(await pushOutput(tree, spec, ctx));
      continue;
    }
    results.push(await writeLocalOutput(tree, spec, targets[next++] as OutputTarget, ctx, force));
  }
  return results;
}

async function writeLocalOutput(
  tree: RootfsTree,
  spec: OutputSpec,
  target: OutputTarget,
  ctx: OutputContext,
  force: { force: boolean },
): Promise<OutputResult> {
  // The layout writer and its image code load only for an `oci` output (CLI start time).
  const layout = spec.format === "oci" ? await import("./oci-layout-output.js") : undefined;
  const writer = layout ? layout.createOciLayoutWriter(spec) : (outputWriterFor(spec) as OutputWriter);
  const final = target.path;
  const withVerity = ctx.verity !== undefined && VERITY_FORMATS.includes(target.format);
  let verity: Awaited<ReturnType<typeof addVerityTree>> | undefined;
  let digest: FileDigest | undefined;
  try {
    await writeAtomically(
      final,
      async (tmp) => {
        const written = await writer.write(tree, { tmp, final }, ctx);
        const companions = written?.companions ?? [];
        digest = written?.digest;
        if (!withVerity || !ctx.verity) return companions;
        verity = await addVerityTree(tree, target.format, { tmp, final }, ctx.verity, ctx.signal);
        return [...companions, verity.companion];
      },
      { signal: ctx.signal, beforePublish: () => checkReplaceable(target, force) },
    );
  } catch (e) {
    throw await explainOutputError(e, { format: target.format, path: final, scratchDir: ctx.scratchDir });
  }
  // A record a previous --verity build left beside this path would describe another image.
  if (!verity && VERITY_FORMATS.includes(target.format)) await removeStaleVerityRecord(final);
  // The verity pass read the whole image already: its digest is the file's.
  if (verity) return { format: target.format, path: final, bytes: (await stat(final)).size, sha256: verity.fileSha256, verity: verity.info };
  if (layout) return layout.describeLayoutOutput(final);
  return describeOutput(target.format, final, tree, digest);
}

/** The output's report; `written` is the writer's own digest of the file, when it had one (the file was only renamed since). */
async function describeOutput(format: OutputFormat, path: string, tree: RootfsTree, written?: FileDigest): Promise<OutputResult> {
  if (format === "dir") return { format, path, bytes: tree.contentBytes(), sha256: null };
  const { sha256, bytes } = written ?? (await fileSha256(path));
  return { format, path, bytes, sha256 };
}
