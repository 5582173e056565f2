// The agent's output must arrive whole however slowly the host takes it
// (docs/guest-protocol.md §6): the channels are QEMU virtserialports, which
// QEMU throttles when the host end is full, so the agent's writes wait.
// (Over a virtconsole QEMU drops what the host end cannot take at once:
// with the channels made virtconsoles, this test lost megabytes.)
// A real boot: the probe writes 64 MiB after its report, the caller's
// stream takes it slowly and stops now and then, and the bytes are compared
// by sha256 with the stream the probe is known to write.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { boot, buildProbeImage, isolateRunDirectories } from "./helpers/boot.js";
import { tempDir } from "./helpers/temp-dir.js";

const BYTES = 64 << 20;

/** The probe's --output-bytes stream: xorshift32 from seed 0x2545f491, each word little-endian. */
function probeStreamSha256(n: number): string {
  const hash = createHash("sha256");
  const block = Buffer.alloc(1 << 16);
  let x = 0x2545f491;
  for (let left = n; left > 0; left -= block.length) {
    const len = Math.min(left, block.length);
    for (let i = 0; i < len; i += 4) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      for (let j = 0; j < 4 && i + j < len; j++) block[i + j] = (x >>> (8 * j)) & 0xff;
    }
    hash.update(block.subarray(0, len));
  }
  return hash.digest("hex");
}

/**
 * A consumer slower than the guest: every chunk is taken a little later,
 * and after every 8 MiB it takes nothing for 300 ms, long enough for every
 * buffer between it and the agent to fill up.
 */
class SlowSink extends Writable {
  readonly chunks: Buffer[] = [];
  bytes = 0;
  constructor() {
    super({ highWaterMark: 64 << 10 });
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, done: (e?: Error | null) => void): void {
    const before = this.bytes;
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    const stall = Math.floor(this.bytes / (8 << 20)) > Math.floor(before / (8 << 20));
    setTimeout(done, stall ? 300 : 1);
  }
}

describe("the agent's output under back-pressure", () => {
  isolateRunDirectories();

  it("64 MiB through stdout to a slow reader arrive whole, in order (sha256)", async () => {
    const dir = tempDir();
    const image = await buildProbeImage(dir, "cpio", "rootfs.cpio");
    const sink = new SlowSink();
    const r = await boot({ image, args: ["--output-bytes", String(BYTES), "--exit", "4"], stdout: sink });
    assert.equal(r.exitCode, 4, r.stderr);
    const all = Buffer.concat(sink.chunks);
    const nl = all.indexOf(0x0a);
    assert.equal(JSON.parse(all.subarray(0, nl).toString()).probe, 1);
    const data = all.subarray(nl + 1);
    assert.equal(data.length, BYTES, `${BYTES - data.length} bytes lost`);
    assert.equal(createHash("sha256").update(data).digest("hex"), probeStreamSha256(BYTES));
  });
});
