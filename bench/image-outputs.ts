// Benchmark: one real tree (Python's and Perl's standard libraries, a few
// thousand files) written to ext4, erofs and squashfs by our outputs, side by
// side with the plain tool run on the same directory, as a user would:
//   mke2fs -t ext4 -d DIR IMG SIZE,  mkfs.erofs -zlz4hc IMG DIR,  mksquashfs DIR IMG -comp zstd
// Median of RUNS runs each, plus image sizes. Run as root (the plain tools
// read owners from the directory; ours from the tree):
//   npm run build && node dist/bench/image-outputs.js
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createErofsWriter, createSquashfsWriter, ext4Output, squashfsOutput } from "../src/outputs/registry.js";
import { cachedImageTool } from "../src/provision/index.js";
import { cacheRoot } from "../src/util/cache-dir.js";
import { ext4ImageSize } from "../src/formats/ext4/index.js";
import type { OutputWriter } from "../src/outputs/output.js";
import { readDirectoryTree } from "../src/formats/dir/index.js";
import { machineLine, median, timeRuns, writeResults } from "./stats.js";

const RUNS = 3;
const SOURCES = ["/usr/lib/python3.11", "/usr/share/perl"].filter((d) => existsSync(d));
const EPOCH = 1_700_000_000;

const work = mkdtempSync(join(tmpdir(), "a3s-bench-images-"));
const src = join(work, "src");
execFileSync("mkdir", [src]);
for (const d of SOURCES) execFileSync("cp", ["-a", d, src]);
const tree = await readDirectoryTree(src, { epoch: EPOCH });
const files = tree.entries().length;
const contentMiB = tree.contentBytes() / 2 ** 20;
let n = 0;

function fileSize(p: string): number {
  return statSync(p).size;
}

async function ours(writer: OutputWriter, ext: string): Promise<{ times: number[]; bytes: number }> {
  let last = "";
  const times = await timeRuns(RUNS, 1, async () => {
    last = join(work, `ours-${n++}.${ext}`);
    await writer.write(tree, { tmp: last, final: last }, { epoch: EPOCH, warn: () => undefined });
  });
  return { times, bytes: fileSize(last) };
}

async function plain(ext: string, command: (img: string) => [string, string[]]): Promise<{ times: number[]; bytes: number }> {
  let last = "";
  const times = await timeRuns(RUNS, 1, () => {
    last = join(work, `plain-${n++}.${ext}`);
    const [file, args] = command(last);
    execFileSync(file, args, { stdio: ["ignore", "ignore", "pipe"] });
  });
  return { times, bytes: fileSize(last) };
}

async function main(): Promise<void> {
  const ext4Size = ext4ImageSize(tree);
  const ext4Ours = await ours(ext4Output, "ext4");
  const ext4Free = /Free blocks:\s+(\d+)/.exec(
    execFileSync("dumpe2fs", ["-h", join(work, `ours-${n - 1}.ext4`)], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }),
  )?.[1];
  // The plain tool gets the same size ours computed, so only the population step differs.
  const ext4Plain = await plain("ext4", (img) => ["mke2fs", ["-q", "-F", "-t", "ext4", "-d", src, img, `${ext4Size.bytes / 1024}k`]]);
  const erofsOurs = await ours(createErofsWriter({ compression: "lz4hc" }), "erofs");
  const erofsPlain = await plain("erofs", (img) => ["mkfs.erofs", ["--quiet", "-zlz4hc", img, src]]);
  const sqfsOurs = await ours(squashfsOutput, "sqfs");
  const sqfsPlain = await plain("sqfs", (img) => ["mksquashfs", [src, img, "-noappend", "-comp", "zstd", "-quiet", "-no-progress"]]);
  // The same outputs through Debian 13's tools (provisioned into the cache), fed the tree's tar stream: no staging copy.
  const erofsTool = await cachedImageTool(cacheRoot(), "mkfs.erofs");
  const sqfsTool = await cachedImageTool(cacheRoot(), "mksquashfs");
  if (!erofsTool || !sqfsTool) throw new Error("provision the Debian 13 tools first: run any build with -o erofs:... and -o squashfs:... once");
  const erofsStream = await ours(createErofsWriter({ compression: "lz4hc", tools: { "mkfs.erofs": erofsTool.command } }), "erofs");
  const erofsNewPlain = await plain("erofs", (img) => [erofsTool.command.file, [...erofsTool.command.prefix, "--quiet", "-zlz4hc", img, src]]);
  const sqfsStream = await ours(createSquashfsWriter({ tools: { mksquashfs: sqfsTool.command } }), "sqfs");
  const sqfsNewPlain = await plain("sqfs", (img) => [sqfsTool.command.file, [...sqfsTool.command.prefix, src, img, "-noappend", "-comp", "zstd", "-quiet", "-no-progress"]]);
  rmSync(work, { recursive: true, force: true });

  const rows = [
    { format: "ext4", plainCommand: "mke2fs -t ext4 -d DIR IMG SIZE", ours: ext4Ours, plain: ext4Plain },
    { format: "erofs (lz4hc)", plainCommand: "mkfs.erofs -zlz4hc IMG DIR", ours: erofsOurs, plain: erofsPlain },
    { format: "squashfs (zstd)", plainCommand: "mksquashfs DIR IMG -comp zstd", ours: sqfsOurs, plain: sqfsPlain },
    { format: `erofs (lz4hc), tar stream into ${erofsTool.version}`, plainCommand: "the same mkfs.erofs -zlz4hc IMG DIR", ours: erofsStream, plain: erofsNewPlain },
    { format: `squashfs (zstd), tar stream into ${sqfsTool.version}`, plainCommand: "the same mksquashfs DIR IMG -comp zstd", ours: sqfsStream, plain: sqfsNewPlain },
  ].map((r) => ({
    format: r.format,
    plainCommand: r.plainCommand,
    oursMs: median(r.ours.times),
    plainMs: median(r.plain.times),
    ratio: median(r.ours.times) / median(r.plain.times),
    oursBytes: r.ours.bytes,
    plainBytes: r.plain.bytes,
    oursRunsMs: r.ours.times,
    plainRunsMs: r.plain.times,
  }));
  const mib = (b: number): string => (b / 2 ** 20).toFixed(1) + " MiB";
  const md = [
    `# Filesystem images: ${files} entries, ${contentMiB.toFixed(1)} MiB of file content (median of ${RUNS} runs)`,
    "",
    machineLine() + `; tree: ${SOURCES.join(" + ")}; 1-minute load average ${loadavg()[0]?.toFixed(2)} at the end`,
    "",
    "| format | a3s-rootfs output | plain tool on the directory | ratio | image (ours) | image (plain) |",
    "|---|---|---|---|---|---|",
    ...rows.map(
      (r) =>
        `| ${r.format} | ${(r.oursMs / 1000).toFixed(2)} s | ${(r.plainMs / 1000).toFixed(2)} s (\`${r.plainCommand}\`) | ${r.ratio.toFixed(2)}× | ${mib(r.oursBytes)} | ${mib(r.plainBytes)} |`,
    ),
    "",
    `ext4 size computed from the tree: ${ext4Size.blocks} blocks (${mib(ext4Size.bytes)}), ${ext4Size.inodes} inodes; ` +
      `free after writing: ${ext4Free} blocks (${((Number(ext4Free) / ext4Size.blocks) * 100).toFixed(1)}%).`,
    "",
    "What the ratio includes: ours writes ext4 itself (and checks it with e2fsck -fn), and for erofs and squashfs writes a staging copy of the tree " +
      "first where the tool cannot read tar exactly (the host's erofs-utils 1.5 and squashfs-tools 4.5.1: the first " +
      "erofs and squashfs rows, the old design); the last two rows are the new design, the tree's tar stream piped into " +
      "Debian 13's tool as a3s-rootfs provisions it, against that same tool on the directory. The plain tool reads the " +
      "directory that already exists. The plain ext4 image gets our computed size. The machine was shared with other " +
      "helpers' work while this ran: absolute times are noisy, ratios within a row are from back-to-back runs.",
    "",
    "Command: `npm run build && node dist/bench/image-outputs.js` (as root)",
  ].join("\n");
  writeResults("image-outputs", { machine: machineLine(), sources: SOURCES, files, contentBytes: tree.contentBytes(), ext4Size, ext4FreeBlocks: Number(ext4Free), rows }, md);
  console.log(md);
}

await main();
