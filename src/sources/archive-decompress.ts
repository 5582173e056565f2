import { spawn } from "node:child_process";
import { createReadStream, createWriteStream } from "node:fs";
import { Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import * as zlib from "node:zlib";
import { A3sError } from "../errors.js";
import { requireTool } from "../util/host-tool.js";

export type ArchiveCompression = "none" | "gzip" | "zstd";

/** What the first bytes of a file say about its compression; other compressors are named and refused. */
export function compressionFromMagic(head: Buffer, path: string): ArchiveCompression {
  const starts = (...bytes: number[]): boolean => bytes.every((b, i) => head[i] === b);
  if (starts(0x1f, 0x8b)) return "gzip";
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return "zstd";
  const other = starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)
    ? "xz"
    : starts(0x42, 0x5a, 0x68)
      ? "bzip2"
      : starts(0x04, 0x22, 0x4d, 0x18) || starts(0x02, 0x21, 0x4c, 0x18)
        ? "lz4"
        : undefined;
  if (other) {
    throw new A3sError("EUNSUPPORTED", `${path} is ${other}-compressed; only gzip and zstd are supported`, {
      subject: path,
      hint: `decompress it first, or recompress it with gzip or zstd`,
    });
  }
  return "none";
}

/**
 * Decompresses `src` into `dest`, stopping with an error once more than
 * `maxBytes` come out: a few kilobytes of gzip can expand to terabytes
 * (a decompression bomb), and this file lands on the host's disk.
 */
export async function decompressToFile(
  src: string,
  dest: string,
  compression: Exclude<ArchiveCompression, "none">,
  maxBytes: number,
): Promise<void> {
  const limit = new ByteLimit(maxBytes, src);
  const out = createWriteStream(dest, { highWaterMark: 1 << 20 });
  const corrupt = (e: unknown): A3sError =>
    e instanceof A3sError
      ? e
      : new A3sError("ECORRUPT", `${src}: ${compression} data is corrupt: ${(e as Error).message}`, { subject: src, cause: e });
  if (compression === "gzip") {
    await pipeline(createReadStream(src), zlib.createGunzip(), limit, out).catch((e: unknown) => {
      throw corrupt(e);
    });
    return;
  }
  const native = (zlib as unknown as { createZstdDecompress?: () => Transform }).createZstdDecompress;
  if (native) {
    await pipeline(createReadStream(src), native(), limit, out).catch((e: unknown) => {
      throw corrupt(e);
    });
    return;
  }
  const zstd = requireTool("zstd", "zstd");
  const child = spawn(zstd, ["-d", "-q", "-c", src], { stdio: ["ignore", "pipe", "pipe"] });
  const stderr: Buffer[] = [];
  child.stderr?.on("data", (b: Buffer) => stderr.push(b));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on("error", (e) => reject(new A3sError("ETOOL", `cannot run ${zstd}: ${e.message}`, { subject: zstd })));
    child.on("close", (code) => resolve(code));
  });
  try {
    await pipeline(child.stdout as NodeJS.ReadableStream, limit, out);
  } catch (e) {
    child.kill("SIGKILL");
    await exited.catch(() => undefined);
    throw corrupt(e);
  }
  const code = await exited;
  if (code !== 0) {
    throw new A3sError("ECORRUPT", `${src}: zstd data is corrupt: ${Buffer.concat(stderr).toString().trim()}`, {
      subject: src,
    });
  }
}

/** Passes bytes through until more than `max` have gone by. */
class ByteLimit extends Transform {
  private seen = 0;

  constructor(
    private readonly max: number,
    private readonly src: string,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.max) {
      done(
        new A3sError("ELIMIT", `${this.src} decompresses to more than ${this.max} bytes`, {
          subject: this.src,
          hint: "raise the limit if the archive is trusted and really that large",
        }),
      );
      return;
    }
    done(null, chunk);
  }
}
