// Measures the coherence each way of sharing /workspace gives, for
// docs/boot.md: when the guest sees a file the host changed, and when the
// host sees what the guest wrote. The guest side is
// bench/workspace-io/coherence.c (it prints what it sees, every 10 ms); this
// side changes files and times how long until the guest's report arrives.
// Times are upper bounds: they include the 10 ms poll and the stdout channel.
// With several rounds, each cell is the longest time seen.
//
// Run: npm run build && node dist/bench/workspace-coherence.js [--rounds N] [--kernel FILE] [--name RESULTS]
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { parseArgs } from "node:util";
import { runRootfs } from "../src/boot/run-vm.js";
import { resolveVirtiofsd, type VirtiofsSettings } from "../src/boot/virtiofsd.js";
import { RootfsBuilder } from "../src/index.js";
import { cacheRoot } from "../src/util/cache-dir.js";
import { requireTool } from "../src/util/host-tool.js";
import { machineLine, writeResults } from "./stats.js";

const say = (m: string): void => void process.stderr.write(`workspace-coherence: ${m}\n`);

interface Mode {
  readonly name: string;
  readonly transport: "9p" | "virtiofs";
  readonly ninep?: string;
  readonly virtiofs?: Partial<VirtiofsSettings>;
}

const MODES: Mode[] = [
  { name: "9p cache=none (init's mount)", transport: "9p" },
  { name: "9p cache=mmap", transport: "9p", ninep: "trans=virtio,version=9p2000.L,msize=512000,cache=mmap" },
  { name: "9p cache=loose", transport: "9p", ninep: "trans=virtio,version=9p2000.L,msize=512000,cache=loose" },
  { name: "virtio-fs cache=never", transport: "virtiofs", virtiofs: { cache: "never" } },
  { name: "virtio-fs cache=metadata", transport: "virtiofs", virtiofs: { cache: "metadata" } },
  { name: "virtio-fs cache=auto", transport: "virtiofs", virtiofs: { cache: "auto" } },
  { name: "virtio-fs cache=auto writeback", transport: "virtiofs", virtiofs: { cache: "auto", writeback: true } },
  { name: "virtio-fs cache=always", transport: "virtiofs", virtiofs: { cache: "always" } },
];

/** What the guest reported, as the lines arrive. */
class GuestReports {
  private text = "";
  readonly lines: Record<string, unknown>[] = [];
  private waiters: { test: (l: Record<string, unknown>) => boolean; resolve: (ok: boolean) => void }[] = [];
  readonly sink = new Writable({
    write: (chunk: Buffer, _enc, done): void => {
      this.text += chunk.toString();
      let nl;
      while ((nl = this.text.indexOf("\n")) >= 0) {
        const line = this.text.slice(0, nl);
        this.text = this.text.slice(nl + 1);
        try {
          const l = JSON.parse(line) as Record<string, unknown>;
          this.lines.push(l);
          this.waiters = this.waiters.filter((w) => (w.test(l) ? (w.resolve(true), false) : true));
        } catch {
          // not a report line
        }
      }
      done();
    },
  });

  /** Resolves with the ms until a line passing `test` arrives (or had arrived), or null after `timeoutMs`. */
  async until(test: (l: Record<string, unknown>) => boolean, timeoutMs: number, since = performance.now()): Promise<number | null> {
    if (this.lines.some(test)) return 0;
    const ok = await new Promise<boolean>((resolve) => {
      const w = { test, resolve };
      this.waiters.push(w);
      setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        resolve(false);
      }, timeoutMs);
    });
    return ok ? performance.now() - since : null;
  }
}

/** Polls a host file until its content starts with `want`; ms, or null after `timeoutMs`. */
async function hostSees(path: string, want: string, timeoutMs: number): Promise<number | null> {
  const start = performance.now();
  while (performance.now() - start < timeoutMs) {
    const text = (() => {
      try {
        return readFileSync(path, "utf8");
      } catch {
        return "";
      }
    })();
    if (text.startsWith(want)) return performance.now() - start;
    await new Promise((r) => setTimeout(r, 5));
  }
  return null;
}

interface Outcome {
  mode: string;
  guestWriteClose: number | null;
  guestWriteHeldOpen: number | null;
  inPlaceReopen: number | null;
  inPlaceHeld: number | null;
  growSize: number | null;
  growReopen: number | null;
  newFile: number | null;
  renameReopen: number | null;
}

const WAIT_MS = 4000;

async function measure(image: string, mode: Mode, kernel: string | undefined): Promise<Outcome> {
  const ws = mkdtempSync(join(tmpdir(), "a3s-coherence-ws-"));
  const edit = join(ws, "edit.txt");
  writeFileSync(edit, "v1\n");
  const guest = new GuestReports();
  const run = runRootfs({
    image,
    ...(kernel ? { kernel } : {}),
    workspace: ws,
    transport: mode.transport,
    ...(mode.virtiofs ? { virtiofs: mode.virtiofs } : {}),
    args: ["/workspace", ...(mode.ninep ? ["--remount", `9p:${mode.ninep}`] : [])],
    stdout: guest.sink,
    timeoutS: 120,
  });
  try {
    const ready = await guest.until((l) => l.reopen === "v1", 120_000);
    if (ready === null) throw new Error(`${mode.name}: the guest never reported`);
    const o: Outcome = {
      mode: mode.name,
      guestWriteClose: await hostSees(join(ws, "from-guest.txt"), "g1", 500),
      guestWriteHeldOpen: await hostSees(join(ws, "from-guest-held.txt"), "g2", 3000),
      inPlaceReopen: null,
      inPlaceHeld: null,
      growSize: null,
      growReopen: null,
      newFile: null,
      renameReopen: null,
    };
    // In place, same size: truncate and write the same inode.
    let t = performance.now();
    writeFileSync(edit, "v2\n");
    const [reopen, held] = await Promise.all([
      guest.until((l) => l.reopen === "v2", WAIT_MS, t),
      guest.until((l) => l.held === "v2", WAIT_MS, t),
    ]);
    o.inPlaceReopen = reopen;
    o.inPlaceHeld = held;
    // In place, larger: does the guest see the new size, and the new bytes?
    t = performance.now();
    writeFileSync(edit, "v3 is longer\n");
    const [size, grown] = await Promise.all([
      guest.until((l) => l.size === 13, WAIT_MS, t),
      guest.until((l) => l.reopen === "v3 is longer", WAIT_MS, t),
    ]);
    o.growSize = size;
    o.growReopen = grown;
    t = performance.now();
    writeFileSync(join(ws, "new.txt"), "new\n");
    o.newFile = await guest.until((l) => l.new === true, WAIT_MS, t);
    // How editors save: a new file renamed over the old name.
    t = performance.now();
    writeFileSync(join(ws, "edit.tmp"), "v4\n");
    renameSync(join(ws, "edit.tmp"), edit);
    o.renameReopen = await guest.until((l) => l.reopen === "v4", WAIT_MS, t);
    writeFileSync(join(ws, "edit.tmp"), "stop\n");
    renameSync(join(ws, "edit.tmp"), edit);
    await run;
    return o;
  } finally {
    await run.catch(() => undefined);
    rmSync(ws, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { kernel: { type: "string" }, rounds: { type: "string", default: "1" }, name: { type: "string", default: "workspace-coherence" } },
  });
  const rounds = Number(values.rounds);
  const work = mkdtempSync(join(tmpdir(), "a3s-bench-coherence-"));
  try {
    const virtiofsd = await resolveVirtiofsd({ cache: cacheRoot(), provision: true, progress: say });
    const agent = join(work, "coherence");
    const source = new URL("../../bench/workspace-io/coherence.c", import.meta.url).pathname;
    execFileSync(requireTool("musl-gcc", "musl-tools"), ["-static", "-O2", "-Wall", "-Wno-format-truncation", "-o", agent, source], { stdio: "inherit" });
    const image = join(work, "coherence.erofs");
    await new RootfsBuilder().withAgentBinary(agent).withOutput("erofs", image).build();
    const outcomes: Outcome[] = [];
    for (let round = 1; round <= rounds; round++) {
      for (const mode of MODES) {
        const o = await measure(image, mode, values.kernel);
        say(`round ${round}/${rounds} ${JSON.stringify(o)}`);
        outcomes.push(o);
      }
    }
    type Field = Exclude<keyof Outcome, "mode">;
    /** The longest time over the rounds, or how often it was not seen at all. */
    const cell = (mode: string, field: Field, limit = WAIT_MS): string => {
      const xs = outcomes.filter((o) => o.mode === mode).map((o) => o[field]);
      const missed = xs.filter((x) => x === null).length;
      if (missed) return `not within ${limit / 1000} s${xs.length > 1 ? ` (${missed} of ${xs.length})` : ""}`;
      return `${Math.max(1, Math.round(Math.max(...(xs as number[]))))} ms`;
    };
    const lines = [
      "# Workspace coherence: what each side sees, and when",
      "",
      `${machineLine()}; QEMU microvm, TCG; kernel ${values.kernel ?? "Debian's"}; ${virtiofsd?.version ?? "no virtiofsd"}. ` +
        `One boot per row and round; ${rounds} round(s), each cell the longest time seen.`,
      "Times are from the change to the report reaching the other side (the guest polls every 10 ms, and reads through a fresh open each time).",
      "",
      "Command: `node dist/bench/workspace-coherence.js " + process.argv.slice(2).join(" ") + "`",
      "",
      "| mode | host sees guest write+close | host sees guest write, file still open | guest sees in-place edit (reopen) | … (descriptor held open) | guest sees new size | … new bytes (reopen) | guest sees a new file | guest sees a rename-over save |",
      "|---|---|---|---|---|---|---|---|---|",
      ...MODES.map(
        ({ name: m }) =>
          `| ${m} | ${cell(m, "guestWriteClose", 500)} | ${cell(m, "guestWriteHeldOpen", 3000)} | ${cell(m, "inPlaceReopen")} | ${cell(m, "inPlaceHeld")} | ` +
          `${cell(m, "growSize")} | ${cell(m, "growReopen")} | ${cell(m, "newFile")} | ${cell(m, "renameReopen")} |`,
      ),
    ];
    writeResults(values.name as string, { machine: machineLine(), virtiofsd: virtiofsd?.version, outcomes }, lines.join("\n"));
    say(`wrote bench/results/${values.name}.md and .json`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
