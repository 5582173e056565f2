import { spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { open } from "node:fs/promises";
import type { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import * as zlib from "node:zlib";
import { A3sError } from "../../errors.js";
import { requireTool } from "../../util/host-tool.js";
import type { Compression } from "./magic.js";

/**
 * gzip level 6. Measured on this project's machine (2 cores) over 100 MB of
 * /usr/bin: level 9 took 23 s against 6.4 s for level 6 and saved 0.65 %;
 * on documentation it saved 0.14 %. Not worth 3.5 times the time.
 */
export const GZIP_LEVEL = 6;

/**
 * gzip level 1 for a cpio initramfs (`cpio:X.gz`). QEMU loads the initramfs
 * into guest memory whole, so a larger file costs a copy in memory, while
 * the build pays for every level step. Measured here (2 shared cores) on
 * 30 MB of /usr/bin binaries: level 1 took 0.78 s, level 6 2.44 s (3.1×),
 * for a file 13.6 % larger (37.5 % against 33.0 % of the input); gunzip
 * took the same time for both (0.53 s against 0.51 s), so the guest's
 * unpacking does not pay for it. On the 1.8 MB scratch initramfs level 1
 * is most of the difference between a 30 ms and a 50 ms build. zstd would
 * be smaller still, but Node 20 has no zstd compressor in process (the CLI
 * at level 19 took 0.64 s on that 1.8 MB), and `.gz` must stay gzip.
 */
export const INITRAMFS_GZIP_LEVEL = 1;

/**
 * zstd level 19. Its 8 MiB window is well within what the kernel's
 * initramfs decompressor accepts (lib/decompress_unzstd.c allocates the
 * window the frame asks for, up to 128 MiB). Measured here on 100 MB of
 * /usr/bin and 146 MB of /usr/share/doc: 11-16 % smaller than level 15 and
 * about 21 % smaller than level 3, at about 2 MB/s on 2 cores, a fair price
 * for an artefact of about 10 MB that is booted many times; decompression
 * speed does not depend on the level.
 */
export const ZSTD_LEVEL = 19;

/** How an output file is compressed, chosen by its name: .gz/.tgz, .zst/.tzst, or not at all. */
export function compressionForPath(path: string): Compression | "none" {
  const lower = path.toLowerCase();
  if (lower.endsWith(".gz") || lower.endsWith(".tgz")) return "gzip";
  if (lower.endsWith(".zst") || lower.endsWith(".tzst")) return "zstd";
  return "none";
}

/** A file being written compressed: plain bytes go into `input`. */
export interface CompressingFile {
  /** Takes the plain bytes; the writer ends it when it has written them all. */
  readonly input: NodeJS.WritableStream;
  /** Resolves once `input` has ended and every compressed byte is in the file. */
  finished(): Promise<void>;
  /** After a failure upstream: stops the compressor and waits until nothing writes the file any more. */
  abort(): Promise<void>;
}

/**
 * Opens `path` for compressed writing. Every way gives the same bytes for
 * the same input on the same host:
 * - gzip through Node's zlib, whose header has no name and mtime 0;
 * - zstd through Node's zlib where the runtime has it (Node >= 22.15), else
 *   the zstd CLI with -T0. zstd's multi-threaded output is the same whatever
 *   the thread count (checked: -T1, -T2, -T4 and -T0 give one sha256), so
 *   the number of cores does not change the artefact. The two routes do not
 *   give the same bytes as each other: reproducibility holds per toolchain.
 */
export async function openCompressingFile(path: string, compression: Compression, opts: { gzipLevel?: number } = {}): Promise<CompressingFile> {
  const inProcess = compression === "gzip" ? zlib.createGzip({ level: opts.gzipLevel ?? GZIP_LEVEL }) : nodeZstdCompressor();
  return inProcess ? compressInProcess(inProcess, path) : zstdWithCli(path);
}

function compressInProcess(compressor: Transform, path: string): CompressingFile {
  const written = pipeline(compressor, createWriteStream(path, { highWaterMark: 1 << 20 }));
  void written.catch(() => undefined); // awaited by finished(); a failure also fails the writer's writes
  return {
    input: compressor,
    finished: () => written,
    abort: async () => {
      compressor.destroy();
      await written.catch(() => undefined);
    },
  };
}

/** Node's zstd, typed loosely because @types/node for Node 20 does not know it. */
function nodeZstdCompressor(): Transform | undefined {
  const z = zlib as unknown as {
    createZstdCompress?: (opts: { params: Record<number, number> }) => Transform;
    constants: Record<string, number>;
  };
  const level = z.constants.ZSTD_c_compressionLevel;
  const checksum = z.constants.ZSTD_c_checksumFlag;
  if (!z.createZstdCompress || level === undefined || checksum === undefined) return undefined;
  // The checksum the CLI adds by default, so both routes give frames a reader can verify.
  return z.createZstdCompress({ params: { [level]: ZSTD_LEVEL, [checksum]: 1 } });
}

async function zstdWithCli(path: string): Promise<CompressingFile> {
  const zstd = requireTool("zstd", "zstd");
  const file = await open(path, "w");
  const child = spawn(zstd, ["-q", `-${ZSTD_LEVEL}`, "-T0", "-c"], { stdio: ["pipe", file.fd, "pipe"] });
  const stderr: Buffer[] = [];
  child.stderr?.on("data", (b: Buffer) => stderr.push(b));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on("error", (e) => reject(new A3sError("ETOOL", `cannot run ${zstd}: ${e.message}`, { subject: zstd })));
    child.on("close", (code) => resolve(code));
  });
  void exited.catch(() => undefined); // awaited by finished() or abort()
  // A write to a zstd that died fails its write callback, which the writer reports.
  child.stdin?.on("error", () => undefined);
  return {
    input: child.stdin as NodeJS.WritableStream,
    async finished() {
      try {
        const code = await exited;
        if (code !== 0) {
          throw new A3sError("ETOOL", `zstd failed (status ${code}): ${Buffer.concat(stderr).toString().trim()}`, { subject: path });
        }
      } finally {
        await file.close();
      }
    },
    async abort() {
      child.kill("SIGKILL");
      await exited.catch(() => undefined);
      await file.close();
    },
  };
}
