/**
 * Builds one sample tree into one image format and prints the outcome as
 * JSON. The image tests run it as an unprivileged user (setpriv) to check
 * what each writer does without root:
 *   node build-image-cli.js FORMAT SAMPLE OUTPUT
 */
import { isA3sError } from "../../src/errors.js";
import { erofsOutput, ext4Output, squashfsOutput } from "../../src/outputs/registry.js";
import type { OutputWriter } from "../../src/outputs/output.js";
import type { RootfsTree } from "../../src/tree/index.js";
import { imageSampleTree, rootOwnedTree, unprivilegedSampleTree } from "./image-sample.js";

const writers: Record<string, OutputWriter> = { ext4: ext4Output, erofs: erofsOutput, squashfs: squashfsOutput };
const samples: Record<string, () => RootfsTree> = {
  full: imageSampleTree,
  unprivileged: unprivilegedSampleTree,
  rootOwned: rootOwnedTree,
};

const [format, sample, output] = process.argv.slice(2);
const writer = writers[format ?? ""];
const makeTree = samples[sample ?? ""];
if (!writer || !makeTree || !output) {
  console.error("usage: build-image-cli FORMAT full|unprivileged|rootOwned OUTPUT");
  process.exit(2);
}
const tree = makeTree();
try {
  await writer.write(tree, { tmp: output, final: output }, { epoch: tree.epoch, warn: () => undefined });
  console.log(JSON.stringify({ ok: true }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, code: isA3sError(e) ? e.code : "", message: e instanceof Error ? e.message : String(e) }));
}
