// Benchmark: what an agent's file work costs on /workspace, for each way of
// sharing it (virtio-9p and virtio-fs, each with its settings), against the
// same work on the guest's own tmpfs, in one run.
//
// One erofs image holds the workload agent (bench/workspace-io/fsbench.c,
// static, built here with musl-gcc), BusyBox and a node_modules-like tarball.
// Each setting is one boot, one at a time; rounds interleave the settings so
// a change in the host's load hits them alike, each round starting one
// setting later (stats.ts rotated). In each boot the agent runs,
// in order: (a) create N small files in D directories, (b) stat them all,
// (c) read them all, (d) write then read 256 MiB, (e) BusyBox tar -x of the
// tarball, then find over it.
//
// 9p's settings are guest mount options, and init mounts shares with fixed
// ones, so for the other 9p rows the agent remounts /workspace itself
// (fsbench --remount). virtio-fs's settings are virtiofsd's, set from here.
// Overlay options are tried the same way: the agent remounts the overlay
// on init's own layers with other options (OVERLAY_TRIALS). fsbench also
// sums each system call of (a) and (c) (open, write, close...), so a
// result says which call a slow row loses its time in.
//
// Run: npm run build && node dist/bench/workspace-io.js [--rounds N] [--files N]
//      [--tar-files N] [--seq-mib M] [--only SUBSTRING] [--kernel FILE]
//      [--memory-dir DIR]  (a tmpfs mounted huge=always: adds the rows with guest RAM there)
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { findMicrovmKernel } from "../src/boot/microvm-kernel-cache.js";
import { runRootfs, type RunResult } from "../src/boot/run-vm.js";
import { resolveVirtiofsd, type VirtiofsSettings, DEFAULT_VIRTIOFS_SETTINGS } from "../src/boot/virtiofsd.js";
import { RootfsBuilder } from "../src/index.js";
import { cacheRoot } from "../src/util/cache-dir.js";
import { requireTool } from "../src/util/host-tool.js";
import { machineLine, median, rotated, settleFilesystem, SETTLE_MS, writeResults } from "./stats.js";
import { writePackageTarball, type PackageTreeStats } from "./workspace-io/package-tree.js";

const say = (m: string): void => void process.stderr.write(`workspace-io: ${m}\n`);

/** One way of giving the agent a directory to work in. */
interface Setting {
  readonly name: string;
  /**
   * tmpfs: the guest's /tmp; 9p, virtiofs: /workspace, live; overlay:
   * /workspace in overlay mode (virtio-fs lower, default settings); volume:
   * a --tmpfs volume inside the live workspace.
   */
  readonly where: "tmpfs" | "9p" | "virtiofs" | "overlay" | "volume";
  /**
   * tmpfs: the VM is the overlay rows' (a workspace over virtio-fs in
   * overlay mode), while the agent still works in /tmp. Guest RAM that
   * virtiofsd shares is a memfd, where a VM without shares has anonymous
   * memory (see VM_COST_NOTE), so this row is the same-VM reference for
   * the workspace modes.
   */
  readonly sameVmAsOverlay?: boolean;
  /** Guest RAM in a file in the bench's --memory-dir (run --memory-dir): rows run only when it is given. */
  readonly memoryDir?: boolean;
  /** overlay: the upper layer on a scratch disk of this many MiB instead of a tmpfs. */
  readonly scratchMiB?: number;
  /** 9p: mount options the agent remounts /workspace with (init's own when absent). */
  readonly ninep?: string;
  /**
   * overlay: options the agent remounts the overlay with, on init's own
   * layers, instead of init's (guest/workspace.c), to try others.
   */
  readonly overlayOptions?: string;
  readonly virtiofs?: VirtiofsSettings;
  /**
   * virtiofs: the same microVM kernel booted as a plain file, which
   * a3s-rootfs does not know for one built with the no-flush patch, so
   * every close sends FUSE_FLUSH (src/boot/virtiofs-flush.ts).
   */
  readonly flushOnClose?: boolean;
  /** What a3s-rootfs did before this benchmark on a host without virtiofsd (Debian 12). */
  readonly today?: boolean;
  /** The default chosen from these numbers. */
  readonly chosen?: boolean;
}

/** The layers init mounts the overlay from (guest/workspace.c). */
const OVERLAY_LAYERS = "lowerdir=/run/a3s-overlay/lower,upperdir=/run/a3s-overlay/layer/upper,workdir=/run/a3s-overlay/layer/work";
const NINEP = (cache: string, msize: number): string => `trans=virtio,version=9p2000.L,msize=${msize},cache=${cache}`;
const VFS = (cache: VirtiofsSettings["cache"], more: Partial<VirtiofsSettings> = {}): VirtiofsSettings => ({
  cache,
  writeback: false,
  threadPoolSize: 0,
  sandbox: "namespace",
  ...more,
});
const isChosen = (v: VirtiofsSettings): boolean =>
  v.cache === DEFAULT_VIRTIOFS_SETTINGS.cache &&
  v.writeback === DEFAULT_VIRTIOFS_SETTINGS.writeback &&
  v.threadPoolSize === DEFAULT_VIRTIOFS_SETTINGS.threadPoolSize &&
  v.sandbox === DEFAULT_VIRTIOFS_SETTINGS.sandbox;

/**
 * Overlay options tried against init's (guest/workspace.c). index and
 * metacopy stay off and redirect_dir on: the change set needs them so. What
 * is left to choose: xino, uuid, and volatile (no syncs of the upper, which
 * on a tmpfs upper keep nothing anyway).
 */
const OVERLAY_TRIALS = [
  "redirect_dir=on,index=off,metacopy=off,xino=off",
  "redirect_dir=on,index=off,metacopy=off,xino=off,uuid=off",
  "redirect_dir=on,index=off,metacopy=off,volatile",
  "redirect_dir=on,index=off,metacopy=off,xino=off,uuid=off,volatile",
];

const SETTINGS: Setting[] = [
  { name: "guest /tmp (tmpfs)", where: "tmpfs" },
  { name: "guest /tmp (tmpfs), in the overlay rows' VM (workspace on virtio-fs)", where: "tmpfs", sameVmAsOverlay: true },
  { name: "9p cache=none msize=512000 (init's mount)", where: "9p", today: true },
  { name: "9p cache=none msize=131072", where: "9p", ninep: NINEP("none", 131072) },
  { name: "9p cache=mmap msize=512000", where: "9p", ninep: NINEP("mmap", 512000) },
  { name: "9p cache=loose msize=512000", where: "9p", ninep: NINEP("loose", 512000) },
  ...[
    VFS("never"),
    VFS("metadata"),
    VFS("auto"),
    VFS("auto", { writeback: true }),
    VFS("auto", { threadPoolSize: 4 }),
    VFS("auto", { sandbox: "none" }),
    VFS("always"),
    VFS("always", { writeback: true }),
  ].map((v): Setting => ({
    name:
      `virtio-fs cache=${v.cache}${v.writeback ? " writeback" : ""}` +
      `${v.threadPoolSize ? ` thread-pool=${v.threadPoolSize}` : ""}${v.sandbox === "none" ? " sandbox=none" : ""}`,
    where: "virtiofs",
    virtiofs: v,
    ...(isChosen(v) ? { chosen: true } : {}),
  })),
  { name: "virtio-fs cache=auto, FUSE_FLUSH on every close", where: "virtiofs", virtiofs: VFS("auto"), flushOnClose: true },
  { name: "overlay mode, upper on guest tmpfs (virtio-fs lower)", where: "overlay" },
  { name: "overlay mode, upper on a 2 GiB scratch disk (ext4)", where: "overlay", scratchMiB: 2048 },
  ...OVERLAY_TRIALS.map((o): Setting => ({ name: `overlay mode, tmpfs upper, remounted with ${o}`, where: "overlay", overlayOptions: o })),
  { name: "--tmpfs volume /workspace/vol (in a live virtio-fs workspace)", where: "volume" },
  { name: "guest /tmp (tmpfs), in the overlay rows' VM, guest RAM in --memory-dir", where: "tmpfs", sameVmAsOverlay: true, memoryDir: true },
  { name: "overlay mode, upper on guest tmpfs, guest RAM in --memory-dir", where: "overlay", memoryDir: true },
];

/**
 * Why the workspace modes get a reference of their own. virtiofsd reads and
 * writes the guest's buffers in guest RAM, so with a virtio-fs share QEMU
 * backs all of guest RAM with a shared memfd, where a VM without shares
 * gets anonymous memory (src/boot/qemu-command.ts). Measured on this host
 * (transparent huge pages on madvise for anonymous memory, never for
 * shared memory, Debian's defaults), 10,000 files of 4 KiB created in the
 * guest's /tmp (five times fsbench's 2,000 in 50 directories) by one static
 * program, boots alternated: 394-423 ms without
 * a share against 576-597 ms with one (3 boots each), QEMU taking 6,810-6,930
 * minor page faults against 32,080-32,110. QEMU's mapping of the memfd held
 * no huge page (its smaps), where its anonymous memory did. With the host's
 * shmem_enabled set to advise (432-448 against 608-630 ms, 2 boots each) or
 * always (the faults unchanged) it was no better: QEMU maps the memfd only
 * 4 KiB-aligned, where a huge page cannot be mapped. A job on a VM with a
 * virtio-fs share pays it in /tmp as in /workspace: it is the VM's cost,
 * not the workspace mode's. With fsbench's 2,000 files it did not show
 * (bench/results/workspace-io-targets.md: 0.9×, 0.9-1.1× round by round),
 * so the workspace modes are given against both rows.
 */
const VM_COST_NOTE =
  "This row boots the VM the overlay rows boot (a workspace over virtio-fs, in overlay mode), whose guest RAM is a shared memfd where a VM without shares has " +
  "anonymous memory; with more memory written for the first time (10,000 files) that VM was 1.41-1.46× slower on the same /tmp work in 3 alternated pairs (bench/workspace-io.ts, VM_COST_NOTE).";

/** fsbench's report (bench/workspace-io/fsbench.c). */
interface Timings {
  readonly fstype: string;
  readonly options: string;
  readonly create_ms: number;
  readonly stat_ms: number;
  readonly read_ms: number;
  readonly seq_write_ms: number;
  readonly seq_read_ms: number;
  readonly tar_ms: number;
  readonly find_ms: number;
  /** (a) and (c) per system call, summed (fsbench.c's op_names). */
  readonly ops_ms: Readonly<Record<string, number>>;
}
const PHASES = ["create_ms", "stat_ms", "read_ms", "seq_write_ms", "seq_read_ms", "tar_ms", "find_ms"] as const;
type Phase = (typeof PHASES)[number];

interface Sample extends Timings {
  readonly round: number;
  readonly load: number;
  /** The whole run, host clock: boot, workloads, and in overlay mode the change set's return and apply. */
  readonly bootMs: number;
  /** Overlay mode: the change set's size, and ms from the agent's exit report to runRootfs's return (its transfer and apply, and the power-off). */
  readonly changeBytes?: number;
  readonly changeEntries?: number;
}

function buildFsbench(dir: string): string {
  const out = join(dir, "fsbench");
  const source = new URL("../../bench/workspace-io/fsbench.c", import.meta.url).pathname;
  execFileSync(requireTool("musl-gcc", "musl-tools"), ["-static", "-O2", "-Wall", "-Wno-format-truncation", "-o", out, source], { stdio: "inherit" });
  return out;
}

/**
 * One boot of fsbench under setting `s`. Its host workspace is a new
 * directory under `workspaces`, left there: the caller deletes them all
 * after the last boot, because a host ext4 without a journal creates files
 * slowly for a minute after a large delete (settleFilesystem() in
 * bench/stats.ts), which would slow the next row's creates over 9p and
 * virtio-fs.
 */
async function bootOnce(image: string, s: Setting, args: readonly string[], kernel: string | undefined, workspaces: string, memoryDir: string | undefined): Promise<RunResult> {
  const workspace = s.where === "tmpfs" && !s.sameVmAsOverlay ? undefined : mkdtempSync(join(workspaces, "ws-"));
  const target = s.where === "tmpfs" ? "/tmp" : s.where === "volume" ? "/workspace/vol" : "/workspace";
  return await runRootfs({
    image,
    ...(kernel ? { kernel } : {}),
    ...(workspace ? { workspace } : {}),
    ...(s.where === "overlay" || s.sameVmAsOverlay ? { workspaceMode: "overlay" as const } : {}),
    ...(s.scratchMiB ? { scratchDiskMiB: s.scratchMiB } : {}),
    ...(s.where === "volume" ? { tmpfs: ["/workspace/vol"] } : {}),
    transport: s.where === "9p" ? "9p" : "virtiofs",
    ...(s.virtiofs ? { virtiofs: s.virtiofs } : {}),
    memoryMiB: 1024,
    ...(s.memoryDir && memoryDir !== undefined ? { memoryDir } : {}),
    timeoutS: 900,
    args: [
      target,
      ...args,
      ...(s.ninep ? ["--remount", `9p:${s.ninep}`] : []),
      ...(s.overlayOptions ? ["--remount", `overlay:${OVERLAY_LAYERS},${s.overlayOptions}`] : []),
    ],
  });
}

const fmtMs = (ms: number): string => (ms < 0 || Number.isNaN(ms) ? "—" : ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`);
const fmtX = (x: number): string => (!Number.isFinite(x) || x <= 0 ? "—" : x >= 10 ? `${x.toFixed(0)}×` : `${x.toFixed(1)}×`);

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: "string", default: "1" },
      files: { type: "string", default: "2000" },
      dirs: { type: "string", default: "50" },
      size: { type: "string", default: "4096" },
      "seq-mib": { type: "string", default: "256" },
      "tar-files": { type: "string", default: "5000" },
      only: { type: "string", multiple: true },
      kernel: { type: "string" },
      "workspace-parent": { type: "string", default: tmpdir() },
      /** A tmpfs mounted huge=always (or a hugetlbfs) for the rows with guest RAM in a file (run --memory-dir). */
      "memory-dir": { type: "string" },
      /** The results' file name in bench/results (for a partial run that should not replace the full one). */
      name: { type: "string", default: "workspace-io" },
    },
  });
  const rounds = Number(values.rounds);
  const settings = SETTINGS.filter((s) => !values.only || s.today || s.chosen || s.where === "tmpfs" || values.only.some((o) => s.name.includes(o)));
  const work = mkdtempSync(join(tmpdir(), "a3s-bench-wsio-"));
  const workspaces = mkdtempSync(join(values["workspace-parent"] as string, "a3s-bench-ws-"));
  try {
    const virtiofsd = await resolveVirtiofsd({ cache: cacheRoot(), provision: true, progress: say });
    if (!virtiofsd) throw new Error("no virtiofsd");
    const fsbench = buildFsbench(work);
    const tarball = join(work, "node_modules.tar");
    // --tar-files 0 leaves (e) out, and --seq-mib 0 leaves (d) out: for quick runs of (a)–(c).
    const tarFiles = Number(values["tar-files"]);
    const tree: PackageTreeStats = await writePackageTarball(tarball, Math.max(tarFiles, 1));
    say(`tarball: ${tree.files} files in ${tree.directories} directories, ${(tree.bytes / 1048576).toFixed(1)} MiB`);
    const image = join(work, "fsbench.erofs");
    await new RootfsBuilder()
      .withSource("busybox")
      .withAgentBinary(fsbench)
      .withFile("/bench/node_modules.tar", { hostPath: tarball })
      .withOutput("erofs", image)
      .build();
    const args = [
      "--files", values.files as string,
      "--dirs", values.dirs as string,
      "--size", values.size as string,
      "--seq-mib", values["seq-mib"] as string,
      ...(tarFiles > 0 ? ["--tar", "/bench/node_modules.tar"] : []),
    ];

    // The control row for FUSE_FLUSH: the microVM kernel's own bytes, copied
    // out of the cache so that a3s-rootfs boots them as an unknown kernel.
    let plainKernel: string | undefined;
    if (settings.some((s) => s.flushOnClose)) {
      const built = values.kernel === undefined ? await findMicrovmKernel() : undefined;
      if (built) {
        plainKernel = join(work, "vmlinux-as-a-plain-file");
        copyFileSync(built.path, plainKernel);
      }
    }
    const memoryDir = values["memory-dir"];
    const runnable = settings.filter((s) => (!s.flushOnClose || plainKernel !== undefined) && (!s.memoryDir || memoryDir !== undefined));
    const samples = new Map<string, Sample[]>(runnable.map((s) => [s.name, []]));
    say(`waiting ${SETTLE_MS / 1000} s for the host filesystem to settle (bench/stats.ts settleFilesystem)`);
    settleFilesystem();
    let kernelOrigin = "";
    let accel = "";
    for (let round = 1; round <= rounds; round++) {
      for (const s of rotated(runnable, round)) {
        const load = loadavg()[0] as number;
        const t = performance.now();
        const r = await bootOnce(image, s, args, s.flushOnClose ? plainKernel : values.kernel, workspaces, memoryDir);
        const bootMs = performance.now() - t;
        if (r.exitCode !== 0) throw new Error(`${s.name}: fsbench exited ${r.exitCode}: ${r.stderr || r.setupError}`);
        const report = JSON.parse(r.stdout.trim().split("\n").pop() as string) as Timings;
        if (r.changes && r.changes.outcome !== "applied") throw new Error(`${s.name}: the change set was not applied: ${r.changes.error}`);
        const change = r.changes ? { changeBytes: r.changes.bytes ?? 0, changeEntries: r.changes.entries ?? 0 } : {};
        samples.get(s.name)?.push({ ...report, round, load, bootMs, ...change });
        if (!s.flushOnClose) kernelOrigin = r.kernel;
        accel = r.accel;
        say(
          `round ${round}/${rounds} ${s.name}: ${PHASES.map((p) => `${p.replace("_ms", "")} ${fmtMs(report[p])}`).join(", ")} ` +
            `[${Object.entries(report.ops_ms).map(([o, ms]) => `${o} ${fmtMs(ms)}`).join(", ")}] (load ${load.toFixed(2)})`,
        );
      }
    }

    // ---- summary -----------------------------------------------------------
    const abcOf = (x: Sample): number => x.create_ms + x.stat_ms + x.read_ms;
    const med = (name: string, p: Phase | "abc_ms"): number => {
      const xs = samples.get(name) ?? [];
      return median(xs.map((x) => (p === "abc_ms" ? abcOf(x) : x[p])));
    };
    const tmpfs = runnable.find((s) => s.where === "tmpfs" && !s.sameVmAsOverlay) as Setting;
    // The /tmp row booted as the given row's VM is: shares in overlay mode, guest RAM where its RAM is.
    const sameVmOf = (s: Setting): Setting | undefined => runnable.find((t) => t.sameVmAsOverlay && Boolean(t.memoryDir) === Boolean(s.memoryDir));
    const sameVmTmpfs = runnable.find((s) => s.sameVmAsOverlay);
    const today = runnable.find((s) => s.today) as Setting;
    const cols: (Phase | "abc_ms")[] = ["create_ms", "stat_ms", "read_ms", "abc_ms", "seq_write_ms", "seq_read_ms", "tar_ms", "find_ms"];
    const label = (s: Setting): string => `${s.name}${s.today ? " — today's default" : ""}${s.chosen ? " — **new default**" : ""}`;
    const lines: string[] = [];
    lines.push("# Workspace I/O: 9p and virtio-fs against the guest's tmpfs", "");
    lines.push(
      `${machineLine()}; QEMU microvm, ${accel.toUpperCase()}, kernel ${kernelOrigin}; ${virtiofsd.version} (${virtiofsd.origin}); ` +
        `host directory on ${hostFsType(values["workspace-parent"] as string)}; ${rounds} round(s), medians; load average ${samplesLoad(samples)}.`,
    );
    lines.push(
      "",
      `Workloads, in one boot per row: (a) create ${values.files} files of ${values.size} bytes in ${values.dirs} directories; ` +
        `(b) readdir + stat each; (c) read each; ` +
        (Number(values["seq-mib"]) > 0 ? `(d) write ${values["seq-mib"]} MiB in 1 MiB writes + fsync, then read it; ` : "(d) not run; ") +
        (tarFiles > 0
          ? `(e) BusyBox \`tar -xf\` of a node_modules-like tarball (${tree.files} files, ${tree.directories} directories, ` +
            `${(tree.bytes / 1048576).toFixed(1)} MiB), then \`find\` over it.`
          : "(e) not run.") +
        " Timed in the guest (CLOCK_MONOTONIC). Each boot had a new host workspace directory, and none was deleted before the last boot" +
        ` (the first boot came ${SETTLE_MS / 1000} s after the set-up): the host's ext4 without a journal creates files slowly for a minute after a large delete.`,
      "",
      "The machine is shared (2 cores, other work running): the numbers are noisy, compare rows of one run only. " +
        "Rounds boot the rows one at a time, each round starting one row later, so no row always follows the same one.",
      "",
      "Command: `node dist/bench/workspace-io.js " + process.argv.slice(2).join(" ") + "`",
      "",
      `| where | create | stat | read | (a)–(c) | seq write | seq read | tar -x | find |${rounds > 1 ? " (a)–(c) min–max |" : ""}`,
      `|---|---|---|---|---|---|---|---|---|${rounds > 1 ? "---|" : ""}`,
    );
    const abcRange = (name: string): string => {
      const xs = (samples.get(name) ?? []).map(abcOf);
      return `${fmtMs(Math.min(...xs))}–${fmtMs(Math.max(...xs))}`;
    };
    for (const s of runnable) {
      lines.push(`| ${label(s)} | ${cols.map((c) => fmtMs(med(s.name, c))).join(" | ")} |${rounds > 1 ? ` ${abcRange(s.name)} |` : ""}`);
    }
    lines.push(
      "",
      "Ratios: time against the guest's tmpfs (how many times slower), and today's default against it (how many times faster).",
      "",
      "| where | (a)–(c) vs tmpfs | create vs today | stat vs today | read vs today | (a)–(c) vs today | seq write vs today | seq read vs today | tar -x vs today | find vs today |",
      "|---|---|---|---|---|---|---|---|---|---|",
    );
    for (const s of runnable) {
      if (s.where === "tmpfs") continue;
      // A phase that was not run is -1 in both rows: no ratio.
      const vsToday = cols.map((c) => (med(s.name, c) < 0 ? "—" : fmtX(med(today.name, c) / med(s.name, c))));
      lines.push(`| ${label(s)} | ${fmtX(med(s.name, "abc_ms") / med(tmpfs.name, "abc_ms"))} | ${vsToday.join(" | ")} |`);
    }
    const chosen = runnable.find((s) => s.chosen);
    const modes = runnable.filter((s) => s.where === "overlay" || s.where === "volume");
    if (modes.length) {
      const pct = (name: string, p: Phase): string => (med(name, p) <= 0 ? "—" : `${Math.round((100 * med(tmpfs.name, p)) / med(name, p))} %`);
      lines.push(
        "",
        "Workspace modes against the guest's tmpfs (times slower; targets: overlay within 2× on (a)–(c)) and sequential throughput as a share of tmpfs's (target: ≥ 50 %), " +
          `and against today's default${chosen ? " and the live virtio-fs default" : ""} (times faster). "whole run" is the host's wall time for the boot, including, in overlay mode, the change set's return and apply.`,
        "",
        `| where | (a) vs tmpfs | (b) vs tmpfs | (c) vs tmpfs | (a)–(c) vs tmpfs | (a)–(c) vs tmpfs, round by round: median (range) |` +
          `${sameVmTmpfs ? " (a)–(c) vs the same VM's /tmp | the same, round by round: median (range) |" : ""}` +
          ` seq write, % of tmpfs | seq read, % of tmpfs | (a)–(c) vs today |${chosen ? " (a)–(c) vs live virtio-fs |" : ""} change set | whole run |`,
        `|---|---|---|---|---|---|${sameVmTmpfs ? "---|---|" : ""}---|---|---|${chosen ? "---|" : ""}---|---|`,
      );
      // Each round's pair: the mode's boot against the tmpfs boot of the same
      // round, minutes apart at most. This machine's speed moves between
      // boots (the same tmpfs row took 139-216 ms for (a) in one run), so the
      // ratio of the two medians can pair a fast boot with a slow one; the
      // ratios round by round show how far that moves it.
      const roundRatios = (name: string, baseName: string = tmpfs.name): string => {
        const base = new Map((samples.get(baseName) ?? []).map((x) => [x.round, abcOf(x)]));
        const rs = (samples.get(name) ?? []).flatMap((x) => (base.has(x.round) ? [abcOf(x) / (base.get(x.round) as number)] : []));
        return rs.length ? `${fmtX(median(rs))} (${fmtX(Math.min(...rs))}–${fmtX(Math.max(...rs))})` : "—";
      };
      const sameVmRatios = (s: Setting): string => {
        const ref = sameVmOf(s);
        return ref ? `${fmtX(med(s.name, "abc_ms") / med(ref.name, "abc_ms"))} | ${roundRatios(s.name, ref.name)} | ` : "— | — | ";
      };
      for (const s of modes) {
        const first = samples.get(s.name)?.[0];
        const change = first?.changeBytes !== undefined ? `${first.changeEntries} entries, ${(first.changeBytes / 1048576).toFixed(1)} MiB` : "—";
        const whole = median((samples.get(s.name) ?? []).map((x) => x.bootMs));
        lines.push(
          `| ${s.name} | ${fmtX(med(s.name, "create_ms") / med(tmpfs.name, "create_ms"))} | ${fmtX(med(s.name, "stat_ms") / med(tmpfs.name, "stat_ms"))} | ` +
            `${fmtX(med(s.name, "read_ms") / med(tmpfs.name, "read_ms"))} | ${fmtX(med(s.name, "abc_ms") / med(tmpfs.name, "abc_ms"))} | ${roundRatios(s.name)} | ` +
            (sameVmTmpfs ? sameVmRatios(s) : "") +
            `${pct(s.name, "seq_write_ms")} | ${pct(s.name, "seq_read_ms")} | ` +
            `${fmtX(med(today.name, "abc_ms") / med(s.name, "abc_ms"))} |${chosen ? ` ${fmtX(med(chosen.name, "abc_ms") / med(s.name, "abc_ms"))} |` : ""} ${change} | ${fmtMs(whole)} |`,
        );
      }
      const tmpWhole = median((samples.get(tmpfs.name) ?? []).map((x) => x.bootMs));
      lines.push("", `(The guest tmpfs row's whole run: ${fmtMs(tmpWhole)}.)`);
      for (const ref of runnable.filter((t) => t.sameVmAsOverlay)) {
        lines.push(
          "",
          `The same /tmp work in ${ref.memoryDir ? "the overlay rows' VM with guest RAM in --memory-dir" : "the overlay rows' VM"} against a VM without shares: ` +
            `(a)–(c) ${fmtX(med(ref.name, "abc_ms") / med(tmpfs.name, "abc_ms"))} (round by round: ${roundRatios(ref.name)}).${ref.memoryDir ? "" : ` ${VM_COST_NOTE}`}`,
        );
      }
    }
    const opNames = Object.keys([...samples.values()].flat()[0]?.ops_ms ?? {});
    lines.push(
      "",
      "Where (a) and (c) spend their time: each system call's total over the files, medians (mkdir: the directories of (a)).",
      "",
      `| where | ${opNames.join(" | ")} |`,
      `|---|${opNames.map(() => "---|").join("")}`,
    );
    for (const s of runnable) {
      const xs = samples.get(s.name) ?? [];
      lines.push(`| ${s.name} | ${opNames.map((o) => fmtMs(median(xs.map((x) => x.ops_ms[o] ?? Number.NaN)))).join(" | ")} |`);
    }
    lines.push("", "What the guest had mounted for each row (fsbench reads /proc/self/mounts):", "");
    for (const s of runnable) {
      const first = samples.get(s.name)?.[0];
      if (first) lines.push(`- ${s.name}: \`${first.fstype} ${first.options}\``);
    }
    const summary = runnable.map((s) => ({
      name: s.name,
      where: s.where,
      ninep: s.ninep ?? null,
      virtiofs: s.virtiofs ?? null,
      today: Boolean(s.today),
      chosen: Boolean(s.chosen),
      medians: Object.fromEntries(cols.map((c) => [c, med(s.name, c)])),
      samples: samples.get(s.name),
    }));
    writeResults(values.name as string, { machine: machineLine(), accel, kernel: kernelOrigin, virtiofsd: virtiofsd.version, tarball: tree, args: values, settings: summary }, lines.join("\n"));
    say(`wrote bench/results/${values.name}.md and .json`);
  } finally {
    rmSync(work, { recursive: true, force: true });
    rmSync(workspaces, { recursive: true, force: true });
  }
}

function hostFsType(dir: string): string {
  try {
    return execFileSync("stat", ["-f", "-c", "%T", dir], { encoding: "utf8" }).trim();
  } catch {
    return statSync(dir).isDirectory() ? "unknown" : "missing";
  }
}

function samplesLoad(samples: Map<string, Sample[]>): string {
  const loads = [...samples.values()].flat().map((s) => s.load);
  return `${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}`;
}

await main();
