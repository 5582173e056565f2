// Child of bench/core-speed.ts: the heap a RootfsTree of a directory takes.
// Reads DIR with readDirectoryTree (what a `dir` source or `inspect DIR`
// does), then measures the heap after a full GC, against the heap after a
// full GC before the read. Prints one JSON line.
//   node --expose-gc dist/bench/core-speed-tree-memory.js DIR
import { readDirectoryTree } from "../src/formats/dir/reader.js";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with node --expose-gc");
const dir = process.argv[2] ?? "/usr";
gc();
const before = process.memoryUsage().heapUsed;
const t = performance.now();
const tree = await readDirectoryTree(dir);
const walkMs = performance.now() - t;
gc();
const heapMiB = (process.memoryUsage().heapUsed - before) / 1048576;
process.stdout.write(JSON.stringify({ dir, entries: tree.entryCount, heapMiB: Math.round(heapMiB * 10) / 10, walkMs: Math.round(walkMs) }) + "\n");
