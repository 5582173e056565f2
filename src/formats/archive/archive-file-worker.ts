// The thread that writes an uncompressed archive to its file (see
// archive-file-sink.ts). It receives chunks in order, writes each in slices,
// and hands the chunk's memory back for reuse.
import { closeSync, openSync, writeSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import type { SinkReply, SinkRequest, SinkSetup } from "./archive-file-sink.js";

const port = parentPort;
if (!port) throw new Error("archive-file-worker.ts runs only as a worker thread");
const { path, sliceBytes } = workerData as SinkSetup;

const reply = (message: SinkReply, transfer: ArrayBuffer[] = []): void => port.postMessage(message, transfer);
const failure = (e: unknown): SinkReply => ({
  type: "error",
  message: (e as Error).message,
  code: (e as NodeJS.ErrnoException).code,
});

let fd = -1;
try {
  fd = openSync(path, "w");
  reply({ type: "opened" });
} catch (e) {
  reply(failure(e));
}

port.on("message", (m: SinkRequest) => {
  if (m.type === "close") {
    try {
      if (fd >= 0) closeSync(fd);
      fd = -1;
      reply({ type: "closed" });
    } catch (e) {
      reply(failure(e));
    }
    return;
  }
  try {
    const data = new Uint8Array(m.buffer, 0, m.length);
    for (let done = 0; done < m.length; ) {
      done += writeSync(fd, data, done, Math.min(sliceBytes, m.length - done), m.position + done);
    }
    reply({ type: "written", buffer: m.buffer }, [m.buffer]);
  } catch (e) {
    reply(failure(e));
  }
});
