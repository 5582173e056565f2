import { Decompress } from "fzstd";
import { A3sError } from "../../errors.js";
import { truncatedStream } from "./truncated.js";

/** Largest window a frame may ask for: zstd's own default decoder limit (ZSTD_WINDOWLOG_LIMIT_DEFAULT = 27). */
export const MAX_ZSTD_WINDOW = 1 << 27;
/** A block never regenerates more than this (RFC 8878 Block_Maximum_Size). */
const MAX_BLOCK = 128 * 1024;

/**
 * Decompresses a zstd stream (RFC 8878) with fzstd, in pure JavaScript, for
 * Node versions without zlib's zstd (see decompress.ts).
 *
 * fzstd decodes everything a push gives it before returning, so one 64 KiB
 * chunk of RLE blocks could expand to gigabytes in memory before anyone can
 * count it. This reader therefore cuts the input at block boundaries itself
 * and hands fzstd one block at a time: at most one block (128 KiB) comes out
 * per push, and memory stays flat whatever the ratio. Walking the frames
 * also lets it refuse, before fzstd allocates anything, a frame header that
 * asks for a huge window (a memory bomb), and see a stream cut short.
 */
export async function* zstdBlocks(source: AsyncIterable<Uint8Array>, subject: string): AsyncGenerator<Uint8Array> {
  const corrupt = (message: string, cause?: unknown): A3sError =>
    new A3sError("ECORRUPT", `${subject}: zstd data is corrupt: ${message}`, {
      subject,
      ...(cause === undefined ? {} : { cause }),
    });
  const out: Uint8Array[] = [];
  const decoder = new Decompress((chunk) => {
    if (chunk.byteLength > 0) out.push(chunk);
  });
  const push = (unit: Uint8Array, final: boolean): void => {
    try {
      decoder.push(unit, final);
    } catch (e) {
      throw corrupt((e as Error).message, e);
    }
  };
  const cutter = new BlockCutter(corrupt);
  let read = 0;
  for await (const chunk of source) {
    read += chunk.byteLength;
    for (const unit of cutter.units(chunk)) {
      push(unit, false);
      while (out.length > 0) yield out.shift() as Uint8Array;
    }
  }
  if (cutter.insideFrame()) throw truncatedStream("zstd", subject, read);
  cutter.end();
  push(new Uint8Array(0), true);
  while (out.length > 0) yield out.shift() as Uint8Array;
}

/**
 * Cuts a zstd stream into the units fzstd is fed: each block, with its
 * frame's header before the first one. Skippable frames are dropped; a frame
 * header asking for too large a window is refused before anything is decoded.
 */
class BlockCutter {
  private readonly input = new InputBuffer();
  private frames = 0;
  /** Between frames, inside a frame's blocks, or skipping the rest of a skippable frame. */
  private state: { kind: "between" } | { kind: "blocks"; checksum: boolean } | { kind: "skip"; left: number } = { kind: "between" };
  /** A frame header read but not yet handed over: it goes with the frame's first block. */
  private header: Uint8Array | undefined;

  constructor(private readonly corrupt: (message: string) => A3sError) {}

  /** Adds a chunk of input and yields every whole unit it completes. */
  *units(chunk: Uint8Array): Generator<Uint8Array> {
    const input = this.input;
    input.add(chunk);
    for (;;) {
      if (this.state.kind === "skip") {
        const n = Math.min(this.state.left, input.length);
        input.take(n);
        if (n < this.state.left) {
          this.state = { kind: "skip", left: this.state.left - n };
          return;
        }
        this.state = { kind: "between" };
        continue;
      }
      if (this.state.kind === "between") {
        if (!this.startFrame()) return;
        continue;
      }
      const block = this.takeBlock(this.state.checksum);
      if (!block) return;
      yield block;
    }
  }

  /** Whether the input so far stops inside a frame (the stream would be truncated if it ended here). */
  insideFrame(): boolean {
    return this.input.length > 0 || this.state.kind !== "between" || this.header !== undefined;
  }

  /** After the last chunk: the stream must end between frames, and have had one. */
  end(): void {
    if (this.input.length > 0 || this.state.kind !== "between" || this.header !== undefined) {
      throw this.corrupt("the stream ends inside a frame (truncated)");
    }
    if (this.frames === 0) throw this.corrupt("no zstd frame");
  }

  /** Reads a frame's magic and header, or a skippable frame's size; false when more input is needed. */
  private startFrame(): boolean {
    const input = this.input;
    if (input.length < 4) return false;
    const magic = input.uint32(0);
    if ((magic & 0xfffffff0) === 0x184d2a50) {
      // A skippable frame (metadata some writers add): its size follows the magic.
      if (input.length < 8) return false;
      const size = input.uint32(4);
      input.take(8);
      this.state = { kind: "skip", left: size };
      return true;
    }
    if (magic !== 0xfd2fb528) throw this.corrupt(this.frames === 0 ? "not a zstd stream" : "garbage after a frame");
    const parsed = parseFrameHeader(input, this.corrupt);
    if (parsed === undefined) return false;
    this.header = input.take(parsed.length);
    this.state = { kind: "blocks", checksum: parsed.checksum };
    this.frames++;
    return true;
  }

  /** The next whole block (with the frame's checksum after the last one), or undefined when more input is needed. */
  private takeBlock(checksum: boolean): Uint8Array | undefined {
    const input = this.input;
    if (input.length < 3) return undefined;
    const bh = input.byte(0) | (input.byte(1) << 8) | (input.byte(2) << 16);
    const last = (bh & 1) === 1;
    const type = (bh >> 1) & 3;
    const size = bh >>> 3;
    if (type === 3) throw this.corrupt("reserved block type");
    if (size > MAX_BLOCK) throw this.corrupt(`block of ${size} bytes exceeds the 128 KiB maximum`);
    const body = type === 1 ? 1 : size;
    const trailer = last && checksum ? 4 : 0;
    if (input.length < 3 + body + trailer) return undefined;
    const block = input.take(3 + body + trailer);
    const bytes = this.header ? concat(this.header, block) : block;
    this.header = undefined;
    if (last) this.state = { kind: "between" };
    return bytes;
  }
}

/** The frame header's length and flags, or undefined when more input is needed. */
function parseFrameHeader(
  input: InputBuffer,
  corrupt: (m: string) => A3sError,
): { length: number; checksum: boolean } | undefined {
  if (input.length < 5) return undefined;
  const fhd = input.byte(4);
  const fcsFlag = fhd >> 6;
  const singleSegment = (fhd >> 5) & 1;
  if (fhd & 8) throw corrupt("reserved frame header bit set");
  const dictFlag = fhd & 3;
  const dictBytes = [0, 1, 2, 4][dictFlag] as number;
  const fcsBytes = [singleSegment, 2, 4, 8][fcsFlag] as number;
  const length = 5 + (singleSegment ? 0 : 1) + dictBytes + fcsBytes;
  if (input.length < length) return undefined;
  let at = 5;
  let window: number;
  if (!singleSegment) {
    const wd = input.byte(at++);
    const base = 2 ** (10 + (wd >> 3));
    window = base + (base / 8) * (wd & 7);
  } else {
    window = 0;
  }
  let dictId = 0;
  for (let i = 0; i < dictBytes; i++) dictId += input.byte(at++) * 2 ** (8 * i);
  if (dictId !== 0) throw corrupt("the frame needs a dictionary, which is not supported");
  if (singleSegment) {
    let fcs = 0;
    for (let i = 0; i < fcsBytes; i++) fcs += input.byte(at + i) * 2 ** (8 * i);
    if (fcsBytes === 2) fcs += 256;
    window = fcs;
  }
  if (window > MAX_ZSTD_WINDOW) {
    throw new A3sError("ELIMIT", `zstd frame asks for a ${window}-byte window, more than the ${MAX_ZSTD_WINDOW} allowed`, {
      hint: "recompress it without --long or --ultra window sizes",
    });
  }
  return { length, checksum: ((fhd >> 2) & 1) === 1 };
}

/** Input chunks not yet handed to the decoder, read without copying until a unit is taken. */
class InputBuffer {
  private chunks: Uint8Array[] = [];
  private offset = 0;
  length = 0;

  add(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.byteLength;
  }

  byte(i: number): number {
    let at = this.offset + i;
    for (const c of this.chunks) {
      if (at < c.byteLength) return c[at] as number;
      at -= c.byteLength;
    }
    throw new RangeError("InputBuffer.byte past the end");
  }

  uint32(i: number): number {
    return (this.byte(i) | (this.byte(i + 1) << 8) | (this.byte(i + 2) << 16) | (this.byte(i + 3) << 24)) >>> 0;
  }

  /** Removes and returns the first `n` bytes (a view when they lie in one chunk). */
  take(n: number): Uint8Array {
    const first = this.chunks[0];
    let result: Uint8Array;
    if (first && first.byteLength - this.offset >= n) {
      result = first.subarray(this.offset, this.offset + n);
      this.offset += n;
    } else {
      result = new Uint8Array(n);
      let filled = 0;
      let at = this.offset;
      for (const c of this.chunks) {
        const part = c.subarray(at, Math.min(c.byteLength, at + n - filled));
        result.set(part, filled);
        filled += part.byteLength;
        at = 0;
        if (filled === n) break;
      }
      this.offset += n;
    }
    this.length -= n;
    while (this.chunks.length > 0 && this.offset >= (this.chunks[0] as Uint8Array).byteLength) {
      this.offset -= (this.chunks.shift() as Uint8Array).byteLength;
    }
    return result;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a, 0);
  out.set(b, a.byteLength);
  return out;
}
