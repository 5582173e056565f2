import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, rm, stat, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { A3sError } from "../errors.js";
import { guestProgramPath } from "../programs/index.js";
import { cacheRoot } from "../util/cache-dir.js";
import { requireTool } from "../util/host-tool.js";
import { chooseAccelerator, type AcceleratorChoice } from "./accelerator.js";
import type { ShareTransport } from "./boot-media.js";
import { memoizedFileSha256 } from "./file-digest.js";
import { hostTscKhz } from "./host-tsc.js";
import { detectBootImage } from "./image-kind.js";
import { makeSnapshot } from "./make-snapshot.js";
import { resolveKernel } from "./resolve-kernel.js";
import { SNAPSHOT_SHARES, snapshotTransport } from "./snapshot-machine.js";
import { SNAPSHOT_FILES, SNAPSHOT_FORMAT } from "./snapshot-manifest.js";

/** Where `run --warm` keeps its templates: one snapshot directory per key. */
export function warmTemplateRoot(): string {
  return join(cacheRoot(), "warm");
}

export interface WarmRequest {
  readonly image: string;
  readonly kernel?: string | undefined;
  readonly modules?: string | undefined;
  readonly cpus: number;
  readonly memoryMiB: number;
  readonly accel: AcceleratorChoice;
  readonly transport: ShareTransport | "auto";
  readonly progress: (message: string) => void;
  readonly signal?: AbortSignal | undefined;
}

/**
 * The template snapshot for a run: the one in the cache whose key matches
 * this image, kernel and machine, made now (a full boot to the ready
 * point) when there is none. The key is the sha256 of what makes the
 * machine: the image's and the kernel's sha256 (remembered by file
 * identity, so a warm start hashes neither again), the host's init for a
 * disk image (its initramfs carries it), QEMU's binary (by identity: a
 * new QEMU makes new templates), the accelerator, CPUs, memory, the share
 * devices and the host's TSC rate. A restore checks the manifest again.
 */
export async function warmTemplate(req: WarmRequest): Promise<{ path: string; made: boolean }> {
  const qemu = requireTool("qemu-system-x86_64", "qemu-system-x86");
  const kind = await detectBootImage(req.image);
  if (kind === "dir") {
    throw new A3sError("EUSAGE", `--warm needs an image file, and ${req.image} is a directory`, {
      subject: req.image,
      hint: "build one: a3s-rootfs build ... -o cpio:rootfs.cpio (or ext4, erofs, squashfs)",
    });
  }
  const scratch = await mkdtemp(join(tmpdir(), "a3s-warm-"));
  let key: string;
  try {
    const kernel = await resolveKernel({ kernel: req.kernel, modules: req.modules, workDir: scratch });
    const accel = (await chooseAccelerator(req.accel, qemu, kernel.kernelPath, cacheRoot())).accel;
    const { transport } = await snapshotTransport(req.transport);
    const memo = join(cacheRoot(), "digests");
    const q = await stat(qemu, { bigint: true });
    key = createHash("sha256")
      .update(
        JSON.stringify({
          format: SNAPSHOT_FORMAT,
          image: { kind, sha256: (await memoizedFileSha256(req.image, memo)).sha256 },
          kernel: { origin: kernel.origin, sha256: (await memoizedFileSha256(kernel.kernelPath, memo)).sha256, modules: kernel.modules.map((m) => m.name) },
          init: kind === "cpio" ? null : (await memoizedFileSha256(guestProgramPath("init"), memo)).sha256,
          qemu: `${qemu}:${q.dev}:${q.ino}:${q.size}:${q.mtimeNs}`,
          machine: { accel, cpus: req.cpus, memoryMiB: req.memoryMiB, transport, shares: SNAPSHOT_SHARES, tscKhz: accel === "tcg" ? ((await hostTscKhz()) ?? null) : null },
        }),
      )
      .digest("hex")
      .slice(0, 32);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  const path = join(warmTemplateRoot(), key);
  const manifest = join(path, SNAPSHOT_FILES.manifest);
  if (await stat(manifest).then(() => true, () => false)) {
    const now = new Date();
    await utimes(manifest, now, now).catch(() => {}); // when it was last used, for cache gc
    req.progress(`warm template: ${path}`);
    return { path, made: false };
  }
  req.progress(`warm template: none yet for this image, kernel and machine; making ${path}`);
  await mkdir(warmTemplateRoot(), { recursive: true });
  await makeSnapshot({
    image: req.image,
    output: path,
    ...(req.kernel !== undefined ? { kernel: req.kernel } : {}),
    ...(req.modules !== undefined ? { modules: req.modules } : {}),
    cpus: req.cpus,
    memoryMiB: req.memoryMiB,
    accel: req.accel,
    transport: req.transport,
    progress: req.progress,
    ...(req.signal ? { signal: req.signal } : {}),
    publish: "keep-existing",
  });
  return { path, made: true };
}

/** Removes a template that cannot be restored (made by another QEMU version), so the next run makes it again. */
export async function discardWarmTemplate(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true });
}

export interface WarmTemplate {
  readonly path: string;
  /** When a run last used it (or it was made). */
  readonly lastUsedMs: number;
  /** Allocated bytes on disk. */
  readonly bytes: number;
}

/** The templates in the cache, and the leftovers of interrupted makes (`.*.a3s-tmp-*`). */
export async function listWarmTemplates(): Promise<{ templates: WarmTemplate[]; leftovers: string[] }> {
  const root = warmTemplateRoot();
  const names = await readdir(root).catch(() => [] as string[]);
  const templates: WarmTemplate[] = [];
  const leftovers: string[] = [];
  for (const name of names) {
    const path = join(root, name);
    if (name.startsWith(".")) {
      leftovers.push(path);
      continue;
    }
    const m = await stat(join(path, SNAPSHOT_FILES.manifest)).catch(() => undefined);
    if (!m) {
      leftovers.push(path);
      continue;
    }
    let bytes = 0;
    for (const f of await readdir(path)) bytes += ((await stat(join(path, f)).catch(() => undefined))?.blocks ?? 0) * 512;
    templates.push({ path, lastUsedMs: m.mtimeMs, bytes });
  }
  return { templates, leftovers };
}

/**
 * Removes the templates no run used for `olderThanMs` (all of them with
 * `all`), and leftovers older than an hour (a make may be running).
 * Removing a template a run is restoring from is safe: that run holds its
 * files open.
 */
export async function gcWarmTemplates(opts: { olderThanMs: number; all?: boolean; now?: number }): Promise<{ removed: number; bytes: number }> {
  const now = opts.now ?? Date.now();
  const { templates, leftovers } = await listWarmTemplates();
  let removed = 0;
  let bytes = 0;
  for (const t of templates) {
    if (!opts.all && now - t.lastUsedMs <= opts.olderThanMs) continue;
    await rm(t.path, { recursive: true, force: true });
    removed++;
    bytes += t.bytes;
  }
  for (const l of leftovers) {
    const st = await stat(l).catch(() => undefined);
    if (st && (opts.all || now - st.mtimeMs > 3_600_000)) {
      await rm(l, { recursive: true, force: true });
      removed++;
    }
  }
  return { removed, bytes };
}
