// Benchmark: what dm-verity costs. In one run:
// - build time of erofs outputs with and without --verity (the scratch
//   demo rootfs, and Debian bookworm minbase), beside `veritysetup format`
//   run on the same image, the tool a user would otherwise add;
// - the size the hash tree adds;
// - the boot: VMM start → agent start for the scratch erofs with and without
//   verity, same kernel, boots interleaved one at a time.
// Run: npm run build && node dist/bench/verity.js [--boots N]
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { runRootfs } from "../src/boot/run-vm.js";
import { readArchiveTree } from "../src/formats/open-archive.js";
import { guestProgramPath, RootfsBuilder, writeOutputs, type OutputResult } from "../src/index.js";
import type { RootfsTree } from "../src/tree/index.js";
import { minbaseTar } from "./minbase.js";
import { machineLine, median, writeResults } from "./stats.js";

const BUILD_RUNS = 7;
const bootsArg = process.argv.indexOf("--boots");
const BOOTS = bootsArg > 0 ? Number(process.argv[bootsArg + 1]) : 10;
const work = mkdtempSync(join(tmpdir(), "a3s-bench-verity-"));
const loads: number[] = [];
const sampleLoad = (): void => void loads.push(loadavg()[0] ?? 0);
let n = 0;

interface BuildRow {
  tree: string;
  entries: number;
  plainMs: number;
  verityMs: number;
  veritysetupMs: number;
  plainBytes: number;
  verityBytes: number;
}

async function writeErofs(tree: RootfsTree, verity: boolean): Promise<OutputResult> {
  const path = join(work, `img-${n++}.erofs`);
  const [out] = await writeOutputs(tree, [{ format: "erofs", path }], { epoch: tree.epoch, warn: () => {}, ...(verity ? { verity: {} } : {}) });
  return out as OutputResult;
}

/** Interleaved build timings: plain, with --verity, and veritysetup format over a copy of the plain image. */
async function measureBuilds(name: string, tree: RootfsTree): Promise<BuildRow> {
  const plain: number[] = [];
  const withVerity: number[] = [];
  const setup: number[] = [];
  let plainBytes = 0;
  let verityBytes = 0;
  for (let i = 0; i < BUILD_RUNS; i++) {
    sampleLoad();
    let t = performance.now();
    const p = await writeErofs(tree, false);
    plain.push(performance.now() - t);
    plainBytes = p.bytes;
    t = performance.now();
    const v = await writeErofs(tree, true);
    withVerity.push(performance.now() - t);
    verityBytes = v.bytes;
    // The other way a user gets a verity image: mkfs, then veritysetup format appending to the same file.
    const copy = join(work, `vs-${n++}.erofs`);
    copyFileSync(p.path, copy);
    const t0 = performance.now();
    execFileSync("/usr/sbin/veritysetup", ["format", copy, copy, `--hash-offset=${statSync(copy).size}`, "--salt=00"], { stdio: "ignore" });
    setup.push(performance.now() - t0);
    for (const f of [p.path, v.path, `${v.path}.verity.json`, copy]) rmSync(f, { force: true });
  }
  return { tree: name, entries: tree.entryCount, plainMs: median(plain), verityMs: median(withVerity), veritysetupMs: median(setup), plainBytes, verityBytes };
}

async function measureBoots(): Promise<{ plain: number[]; verity: number[]; kernel: string }> {
  const plainImg = join(work, "boot-plain.erofs");
  const verityImg = join(work, "boot-verity.erofs");
  const probe = guestProgramPath("probe");
  await new RootfsBuilder().withAgentBinary(probe).withOutput("erofs", plainImg).withEpoch(0).build();
  await new RootfsBuilder().withAgentBinary(probe).withOutput("erofs", verityImg).withEpoch(0).withVerity().build();
  const plain: number[] = [];
  const verity: number[] = [];
  let kernel = "";
  for (let i = 0; i < BOOTS; i++) {
    for (const [image, into] of [[plainImg, plain], [verityImg, verity]] as const) {
      sampleLoad();
      const r = await runRootfs({ image, args: ["--exit", "0"], timeoutS: 120 });
      if (r.exitCode !== 0 || r.timeline.agentStartHostMs === null) throw new Error(`boot of ${image} failed: ${r.setupError ?? r.exitCode}`);
      into.push(r.timeline.agentStartHostMs);
      kernel = r.kernel;
    }
  }
  return { plain, verity, kernel };
}

async function main(): Promise<void> {
  const scratch = await new RootfsBuilder().withAgentBinary(guestProgramPath("probe")).withEpoch(0).buildTree();
  const minbase = await readArchiveTree(minbaseTar());
  const builds = [await measureBuilds("scratch (probe agent)", scratch), await measureBuilds("Debian bookworm minbase", minbase)];
  const boots = await measureBoots();
  rmSync(work, { recursive: true, force: true });

  const bootPlain = median(boots.plain);
  const bootVerity = median(boots.verity);
  const bootCost = bootVerity / bootPlain - 1;
  const md = [
    "# dm-verity: build, size and boot cost",
    "",
    `${machineLine()}; TCG; host load (1-min loadavg, 2 cores) during the run: median ${median(loads).toFixed(2)}, max ${Math.max(...loads).toFixed(2)}.`,
    "",
    `## Build (erofs output, in-process, median of ${BUILD_RUNS}, interleaved)`,
    "",
    "| tree | entries | erofs | erofs + --verity | verity's share | veritysetup format alone (same image) | image | + hash tree | size overhead |",
    "|---|---|---|---|---|---|---|---|---|",
    ...builds.map(
      (b) =>
        `| ${b.tree} | ${b.entries} | ${b.plainMs.toFixed(0)} ms | ${b.verityMs.toFixed(0)} ms | ${(b.verityMs - b.plainMs).toFixed(0)} ms (${((b.verityMs / b.plainMs - 1) * 100).toFixed(0)} %) | ` +
        `${b.veritysetupMs.toFixed(0)} ms | ${b.plainBytes} B | ${b.verityBytes - b.plainBytes} B | ${((b.verityBytes / b.plainBytes - 1) * 100).toFixed(2)} % |`,
    ),
    "",
    "\"verity's share\" is our hash tree pass (one read of the image, which also gives the file's sha256 that a plain build",
    "computes in a read of its own). `veritysetup format` is shown for the same work done by the tool a user would",
    "otherwise chain after mkfs.erofs; it does not include computing the image's sha256.",
    "",
    `## Boot (scratch erofs, ${BOOTS} boots each, interleaved, kernel ${boots.kernel})`,
    "",
    "| image | VMM start → agent start, median | min | max |",
    "|---|---|---|---|",
    `| erofs | ${bootPlain.toFixed(0)} ms | ${Math.min(...boots.plain).toFixed(0)} ms | ${Math.max(...boots.plain).toFixed(0)} ms |`,
    `| erofs + dm-verity | ${bootVerity.toFixed(0)} ms | ${Math.min(...boots.verity).toFixed(0)} ms | ${Math.max(...boots.verity).toFixed(0)} ms |`,
    "",
    `Cost of verity at boot: ${(bootCost * 100).toFixed(1)} % (target: at most 10 %).`,
    "",
    "Command: `npm run build && node dist/bench/verity.js`",
  ].join("\n");
  writeResults("verity", { machine: machineLine(), loads, builds, boots: { ...boots, medianPlainMs: bootPlain, medianVerityMs: bootVerity, cost: bootCost } }, md);
  process.stdout.write(md + "\n");
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
