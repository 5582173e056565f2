// Benchmark: distribution through a registry, on Debian's docker-registry on
// loopback, one run of each, side by side.
//
// 1. Push. The Debian bookworm minbase (mmdebstrap, bench/minbase.ts), made
//    into a one-layer OCI layout by umoci, is built by a3s-rootfs into
//    `-o oci:DIR:v1`. That same layout is then pushed to the registry
//    by our push (oci/registry/push.ts, in this process, a fresh client) and
//    by `skopeo copy oci:DIR:v1 docker://REF`, each to its own repository,
//    each twice (the second push of the same build should send nothing).
//    The CLI's `build ... -o docker://REF` (build and push in one) is timed too.
// 2. Boot by reference. The same rootfs is pushed once as an erofs boot image
//    artifact (`-o erofs:docker://REF`) and once as an OCI image
//    (`-o docker://REF`); then `run docker://REF` of each, with an empty blob
//    cache (the kernel cache kept): the artifact is pulled, verified and
//    booted; the image is pulled, built into an erofs and booted. Then each
//    again with the cache kept, and the local erofs file booted directly
//    as the floor.
//
// The host is shared (2 cores, other work running): the load average before
// and after each step is recorded, and the numbers are one run each.
// Run as root:  npm run -s build && node dist/bench/distribution.js
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import type { LocalImage } from "../src/oci/local-image.js";
import type { Descriptor } from "../src/oci/manifest.js";
import { parseReference } from "../src/oci/reference.js";
import { RegistryClient } from "../src/oci/registry/client.js";
import { pushImage, type PushResult } from "../src/oci/registry/push.js";
import { ContentStore } from "../src/oci/store/content-store.js";
import { cacheRoot } from "../src/util/cache-dir.js";
import { startRegistry } from "../test/helpers/registry.js";
import { compileTestBinary } from "../test/helpers/static-binary.js";
import { MINBASE_TAR, minbaseTar } from "./minbase.js";
import { INSTALLED_CLI as CLI } from "./installed-cli.js";
import { machineLine, writeResults } from "./stats.js";

const BASE_DIR = "/tmp/a3s-bench-distribution";
/** What a fresh cache keeps of the user's: the kernels and the provisioned tools, never blobs or images. */
const SHARED_CACHE_ENTRIES = ["kernels", "erofs-utils", "squashfs-tools", "virtiofsd"];

interface Step {
  readonly name: string;
  readonly command: string;
  readonly ms: number;
  /** 1-minute load average before and after. */
  readonly load: readonly [number, number];
  readonly detail?: Record<string, unknown>;
}

const steps: Step[] = [];

function sh(file: string, args: string[]): void {
  execFileSync(file, args, { stdio: ["ignore", "ignore", "inherit"] });
}

/** Times `fn`, records it under `name` with the command it stands for. */
async function step<T>(name: string, command: string, fn: () => Promise<T> | T, detail?: (r: T) => Record<string, unknown>): Promise<T> {
  const before = loadavg()[0] as number;
  const t = performance.now();
  const r = await fn();
  const ms = performance.now() - t;
  steps.push({ name, command, ms: Math.round(ms), load: [round(before), round(loadavg()[0] as number)], ...(detail ? { detail: detail(r) } : {}) });
  process.stderr.write(`bench: ${name}: ${Math.round(ms)} ms\n`);
  return r;
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

/** Runs the CLI; its stdout, or an error with its stderr. */
function cli(args: string[], env: NodeJS.ProcessEnv = {}): string {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`a3s-rootfs ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/** The minbase as a one-layer OCI layout (tag base), made by umoci once and kept while the tarball is the same. */
function baseLayout(): string {
  const stamp = String(statSync(minbaseTar()).mtimeMs);
  const layout = join(BASE_DIR, "layout");
  const stampFile = join(BASE_DIR, "minbase.stamp");
  if (existsSync(stampFile) && readFileSync(stampFile, "utf8") === stamp) return layout;
  rmSync(BASE_DIR, { recursive: true, force: true });
  mkdirSync(BASE_DIR, { recursive: true });
  const bundle = join(BASE_DIR, "bundle");
  sh("umoci", ["init", "--layout", layout]);
  sh("umoci", ["new", "--image", `${layout}:base`]);
  sh("umoci", ["unpack", "--image", `${layout}:base`, bundle]);
  sh("tar", ["--numeric-owner", "-xpf", MINBASE_TAR, "-C", join(bundle, "rootfs")]);
  sh("umoci", ["repack", "--image", `${layout}:base`, bundle]);
  rmSync(bundle, { recursive: true, force: true });
  writeFileSync(stampFile, stamp);
  return layout;
}

/** An OCI layout's one image, as our push takes it: the manifest's bytes and a file per blob. */
function readLayoutImage(dir: string): LocalImage {
  const blobPath = (d: Descriptor): string => join(dir, "blobs", "sha256", d.digest.slice("sha256:".length));
  const index = JSON.parse(readFileSync(join(dir, "index.json"), "utf8")) as { manifests: Descriptor[] };
  const entry = index.manifests[0] as Descriptor;
  const bytes = readFileSync(blobPath(entry));
  const manifest = JSON.parse(bytes.toString("utf8")) as { config: Descriptor; layers: Descriptor[] };
  return {
    manifest: { descriptor: { mediaType: entry.mediaType, digest: entry.digest, size: entry.size }, bytes },
    blobs: [manifest.config, ...manifest.layers].map((d) => ({ descriptor: d, path: blobPath(d) })),
  };
}

/** An empty cache directory that shares the user's kernels and tools, so a run measures the pull, not a kernel build. */
function freshCache(parent: string, name: string): string {
  const dir = join(parent, name);
  mkdirSync(dir, { recursive: true });
  for (const entry of SHARED_CACHE_ENTRIES) {
    const from = join(cacheRoot(), entry);
    if (existsSync(from)) symlinkSync(from, join(dir, entry));
  }
  return dir;
}

interface RunJson {
  exitCode: number;
  timeline?: Record<string, number>;
  rootVerity?: unknown;
}

async function main(): Promise<void> {
  const layout = baseLayout();
  const agent = compileTestBinary({ exitCode: 0 });
  const registry = await startRegistry();
  const work = mkdtempSync(join(tmpdir(), "a3s-bench-distribution-"));
  const env = { SOURCE_DATE_EPOCH: "0", A3S_CACHE_DIR: freshCache(work, "build-cache") };
  const source = `oci:${layout}:base`;
  try {
    // ---- 1. push ----
    const ours = join(work, "ours-layout");
    const built = await step("build -o oci:DIR (the layout both pushes send)", `a3s-rootfs build ${source} --agent AGENT -o oci:DIR:v1`, () =>
      JSON.parse(cli(["build", source, "--agent", agent, "-o", `oci:${ours}:v1`, "--json"], env)) as { entries: number; outputs: { digest: string; bytes: number }[] },
    );
    const image = readLayoutImage(ours);
    const layerBytes = image.blobs.reduce((n, b) => n + b.descriptor.size, 0);
    // Both pushes read the same files: read them once first, so neither pays for the disk.
    for (const b of image.blobs) readFileSync(b.path as string);

    const client = (): RegistryClient => new RegistryClient({ store: new ContentStore(join(work, `client-${Math.random().toString(36).slice(2)}`)), credentialLookup: async () => undefined });
    const pushed = (r: PushResult): Record<string, unknown> => ({ uploaded: r.uploaded, mounted: r.mounted, existing: r.existing, uploadedBytes: r.uploadedBytes, manifest: r.manifest });
    const oursRef = parseReference(`${registry.host}/push/ours:v1`);
    const c = client();
    const first = await step("ours: push the layout", "pushImage(layout) → docker://REG/push/ours:v1 (in process)", () => pushImage(c, oursRef, image), pushed);
    const second = await step("ours: push the same build again", "the same, again", () => pushImage(client(), oursRef, image), pushed);
    const skopeoRef = `docker://${registry.host}/push/skopeo:v1`;
    await step("skopeo: copy the layout", `skopeo copy --dest-tls-verify=false oci:DIR:v1 ${skopeoRef.replace(registry.host, "REG")}`, () =>
      sh("skopeo", ["copy", "--quiet", "--dest-tls-verify=false", `oci:${ours}:v1`, skopeoRef]),
    );
    await step("skopeo: copy the same layout again", "the same, again", () => sh("skopeo", ["copy", "--quiet", "--dest-tls-verify=false", `oci:${ours}:v1`, skopeoRef]));
    const skopeoDigest = JSON.parse(execFileSync("skopeo", ["inspect", "--tls-verify=false", skopeoRef], { encoding: "utf8" })) as { Digest: string };
    const cliPush = await step("ours: build and push in one command", `a3s-rootfs build ${source} --agent AGENT -o docker://REG/push/cli:v1`, () =>
      JSON.parse(cli(["build", source, "--agent", agent, "-o", `docker://${registry.host}/push/cli:v1`, "--json"], env)) as { outputs: { digest: string; pushed: unknown }[] },
    (r) => ({ digest: r.outputs[0]?.digest, pushed: r.outputs[0]?.pushed }));

    // ---- 2. boot by reference ----
    const artifactRef = `${registry.host}/boot/minbase:erofs`;
    const imageRef = `${registry.host}/boot/minbase:image`;
    const localErofs = join(work, "rootfs.erofs");
    const artifact = await step("push the erofs boot image artifact", `a3s-rootfs build ${source} --agent AGENT -o erofs:docker://REG/boot/minbase:erofs -o erofs:FILE`, () =>
      JSON.parse(cli(["build", source, "--agent", agent, "-o", `erofs:docker://${artifactRef}`, "-o", `erofs:${localErofs}`, "--json"], env)) as { outputs: { bytes: number; digest?: string }[] },
    (r) => ({ erofsBytes: r.outputs[0]?.bytes, digest: r.outputs[0]?.digest }));
    await step("push the OCI image", `a3s-rootfs build ${source} --agent AGENT -o docker://REG/boot/minbase:image`, () =>
      cli(["build", source, "--agent", agent, "-o", `docker://${imageRef}`, "--json"], env),
    );
    const run = (target: string, cache: string): RunJson => {
      const r = JSON.parse(cli(["run", "--json", target], { A3S_CACHE_DIR: cache })) as RunJson;
      if (r.exitCode !== 0) throw new Error(`run ${target}: the agent exited ${r.exitCode}`);
      return r;
    };
    const timeline = (r: RunJson): Record<string, unknown> => ({ timeline: r.timeline });
    const artifactCache = freshCache(work, "run-artifact");
    const imageCache = freshCache(work, "run-image");
    await step("run docker://REF of the artifact, empty blob cache (pull, verify, boot)", "a3s-rootfs run docker://REG/boot/minbase:erofs", () => run(`docker://${artifactRef}`, artifactCache), timeline);
    await step("run docker://REF of the image, empty blob cache (pull, build erofs, boot)", "a3s-rootfs run docker://REG/boot/minbase:image", () => run(`docker://${imageRef}`, imageCache), timeline);
    await step("run docker://REF of the artifact again (cached: verify, boot)", "the same, cache kept", () => run(`docker://${artifactRef}`, artifactCache), timeline);
    await step("run docker://REF of the image again (cached layers: build erofs, boot)", "the same, cache kept", () => run(`docker://${imageRef}`, imageCache), timeline);
    await step("run FILE.erofs (the floor: boot only)", "a3s-rootfs run rootfs.erofs", () => run(localErofs, artifactCache), timeline);

    const ms = (name: string): number => (steps.find((s) => s.name === name) as Step).ms;
    const ratio = (a: number, b: number): string => (a / b).toFixed(2);
    const result = {
      machine: machineLine(),
      cpus: execFileSync("nproc", { encoding: "utf8" }).trim(),
      image: { source: "Debian bookworm minbase (mmdebstrap), one layer via umoci", entries: built.entries, ociDigest: built.outputs[0]?.digest, pushBytes: layerBytes },
      digests: { ours: first.digest, skopeo: skopeoDigest.Digest, cli: cliPush.outputs[0]?.digest },
      artifact: { erofsBytes: artifact.outputs[0]?.bytes },
      steps,
      ratios: {
        pushOursOverSkopeo: Number(ratio(ms("ours: push the layout"), ms("skopeo: copy the layout"))),
        pushAgainOursOverSkopeo: Number(ratio(ms("ours: push the same build again"), ms("skopeo: copy the same layout again"))),
        coldArtifactOverImage: Number(ratio(ms("run docker://REF of the artifact, empty blob cache (pull, verify, boot)"), ms("run docker://REF of the image, empty blob cache (pull, build erofs, boot)"))),
        warmArtifactOverImage: Number(ratio(ms("run docker://REF of the artifact again (cached: verify, boot)"), ms("run docker://REF of the image again (cached layers: build erofs, boot)"))),
      },
      secondPush: pushed(second),
      firstPush: pushed(first),
    };
    const mib = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MiB`;
    const table = steps
      .map((s) => `| ${s.name} | \`${s.command}\` | ${s.ms} ms | ${s.load[0]} → ${s.load[1]} |`)
      .join("\n");
    const md = `# Distribution: push, and boot by reference

${result.machine}, ${result.cpus} CPUs, **shared with other work** (the load average is the 1-minute one before → after each step).
One run of each step, in the order listed: these are indications, not medians.
Image: ${result.image.source}, ${built.entries} entries; the pushed image is ${mib(layerBytes)} (gzip layer and config).
Registry: Debian's docker-registry on loopback, no auth. Boots: QEMU TCG (no KVM), the cached microVM kernel.

| step | command | wall | load |
|---|---|---:|---:|
${table}

- push of the same layout, ours vs \`skopeo copy\`: **${result.ratios.pushOursOverSkopeo}×** the time (lower is better); the same build again: **${result.ratios.pushAgainOursOverSkopeo}×**
- our second push sent ${result.secondPush.uploaded} blobs and ${result.secondPush.uploadedBytes} bytes (${result.secondPush.existing} found, manifest ${result.secondPush.manifest})
- the digests: ours ${result.digests.ours}, skopeo's ${result.digests.skopeo} (${result.digests.ours === result.digests.skopeo ? "the same: skopeo kept the manifest byte for byte" : "different"}); \`build -o docker://\` ${result.digests.cli === result.digests.ours ? "pushed the same digest" : `pushed ${result.digests.cli}`}
- \`run docker://REF\`, empty cache: the erofs artifact (${mib(result.artifact.erofsBytes ?? 0)}) against the OCI image built first: **${result.ratios.coldArtifactOverImage}×** the time; with the cache kept: **${result.ratios.warmArtifactOverImage}×**

Reproduce: \`npm run -s build && node dist/bench/distribution.js\` (as root; mmdebstrap, umoci, skopeo, docker-registry, QEMU).
`;
    writeResults("distribution", result, md);
    process.stdout.write(md);
  } finally {
    await registry.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
