// `build --erofs-compression`: the erofs image is written with the asked
// compression (an uncompressed image holds every file byte as it is), the
// build cache keeps the two apart, the default's key and bytes are those of
// lz4hc, and the flag is refused where it cannot apply.
import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { guestProgramPath } from "../src/index.js";
import { runCli } from "./helpers/cli.js";
import { tempDir } from "./helpers/temp-dir.js";

const PROBE = guestProgramPath("probe");
const INIT = guestProgramPath("init");

interface BuildJson {
  outputs: { format: string; path: string; bytes: number; sha256: string | null; fromCache?: boolean }[];
}

function build(dir: string, cache: string, args: string[]): BuildJson {
  const r = runCli(["build", "--agent", PROBE, "--json", ...args], { env: { SOURCE_DATE_EPOCH: "1700000000", A3S_CACHE_DIR: cache }, cwd: dir });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as BuildJson;
}

describe("build --erofs-compression", () => {
  it("none writes every file byte uncompressed, is cached apart from lz4hc, and lz4hc is the default", () => {
    const dir = tempDir("a3s-erofs-compression-");
    const cache = tempDir("a3s-erofs-compression-cache-");
    const [packed] = build(dir, cache, ["-o", "erofs:packed.erofs"]).outputs;
    const [plain] = build(dir, cache, ["--erofs-compression", "none", "-o", "erofs:plain.erofs"]).outputs;
    assert.ok(packed && plain);
    // The same inputs: only the compression can make the second a miss.
    assert.notEqual(plain.fromCache, true, "an uncompressed erofs must not come from the lz4hc entry");
    const fileBytes = statSync(PROBE).size + statSync(INIT).size;
    assert.ok(plain.bytes >= fileBytes, `uncompressed: ${plain.bytes} bytes for ${fileBytes} bytes of init and agent`);
    assert.ok(packed.bytes < fileBytes, `lz4hc: ${packed.bytes} bytes for ${fileBytes} bytes of init and agent`);

    // lz4hc asked for by name is the default: the same entry, the same bytes.
    const [named] = build(dir, cache, ["--erofs-compression", "lz4hc", "-o", "erofs:named.erofs"]).outputs;
    assert.equal(named?.fromCache, true);
    assert.equal(named?.sha256, packed.sha256);
    // And none again is a hit on its own entry.
    const [again] = build(dir, cache, ["--erofs-compression", "none", "-o", `erofs:${join(dir, "again.erofs")}`]).outputs;
    assert.equal(again?.fromCache, true);
    assert.equal(again?.sha256, plain.sha256);
  });

  it("is refused with an unknown compressor, and without an erofs output", () => {
    const dir = tempDir("a3s-erofs-compression-");
    const unknown = runCli(["build", "--agent", PROBE, "--erofs-compression", "zstd", "-o", "erofs:r.erofs"], { cwd: dir });
    assert.notEqual(unknown.status, 0);
    assert.match(unknown.stderr, /--erofs-compression.*lz4hc.*lz4.*none/s);
    const noErofs = runCli(["build", "--agent", PROBE, "--erofs-compression", "none", "-o", "cpio:r.cpio"], { cwd: dir });
    assert.notEqual(noErofs.status, 0);
    assert.match(noErofs.stderr, /--erofs-compression needs an erofs output/);
  });
});
