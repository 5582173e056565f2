import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, existsSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";
import { createExt4Writer } from "../src/outputs/registry.js";
import { mkfsErofsCapabilities, mksquashfsCapabilities, versionAtLeast } from "../src/formats/image/index.js";
import { bytesContent, RootfsTree } from "../src/tree/index.js";
import { findExecutable } from "../src/util/host-tool.js";
import { tempDir } from "./helpers/temp-dir.js";

/**
 * Stand-ins that print what another release of each tool prints for its
 * version and help, so capability detection is checked for releases this
 * machine does not have (the real tools are exercised by the format tests).
 */
function fakeTool(dir: string, name: string, script: string): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${script}\n`);
  chmodSync(path, 0o755);
  return path;
}

// What the tools answer is remembered in the cache (tool-capability-memo.ts):
// this file's answers go to a cache of its own.
process.env.A3S_CACHE_DIR = tempDir("a3s-tool-memo-cache-");

/** mkfsErofsCapabilities(tool) in a new process, so nothing is remembered in memory between calls. */
function capabilitiesInNewProcess(tool: string): string {
  const module = fileURLToPath(new URL("../src/formats/image/index.js", import.meta.url));
  const script = `import(${JSON.stringify(module)}).then(async (m) => console.log(JSON.stringify(await m.mkfsErofsCapabilities(process.argv[1]))))`;
  return execFileSync(process.execPath, ["-e", script, tool], { encoding: "utf8" });
}

describe("image tool capabilities", () => {
  it("are asked of a tool once, remembered across processes, and asked again when the tool or the memo changed", (t) => {
    const real = ["/usr/bin/mkfs.erofs", "/usr/sbin/mkfs.erofs", "/sbin/mkfs.erofs"].find((p) => existsSync(p));
    if (!real) return t.skip("no mkfs.erofs on this host");
    // The host's mkfs.erofs behind a wrapper that counts its starts.
    const dir = tempDir("a3s-counted-tool-");
    const log = join(dir, "starts");
    const tool = fakeTool(dir, "mkfs.erofs", `echo "$@" >> ${log}\nexec ${real} "$@"`);
    const starts = (): number => (existsSync(log) ? readFileSync(log, "utf8").trim().split("\n").length : 0);

    const first = capabilitiesInNewProcess(tool);
    const asked = starts();
    assert.ok(asked > 0);
    assert.equal(capabilitiesInNewProcess(tool), first);
    assert.equal(starts(), asked, "the second process did not start the tool");

    writeFileSync(tool, readFileSync(tool, "utf8") + "# another release\n");
    assert.equal(capabilitiesInNewProcess(tool), first);
    assert.equal(starts(), 2 * asked, "a changed tool is asked again");

    for (const memo of readdirSync(join(process.env.A3S_CACHE_DIR as string, "tool-capabilities"))) {
      writeFileSync(join(process.env.A3S_CACHE_DIR as string, "tool-capabilities", memo), '{"version":');
    }
    assert.equal(capabilitiesInNewProcess(tool), first);
    assert.equal(starts(), 3 * asked, "a damaged memo is not believed");
  });

  it("compares dotted versions numerically", () => {
    assert.equal(versionAtLeast("1.47.2", "1.47.1"), true);
    assert.equal(versionAtLeast("1.47.10", "1.47.2"), true);
    assert.equal(versionAtLeast("1.47.0", "1.47.1"), false);
    assert.equal(versionAtLeast("4.6", "4.6"), true);
    assert.equal(versionAtLeast("4.5.1", "4.6"), false);
  });

  it("reads mkfs.erofs's help: --tar means tar input; compressors are listed", async () => {
    const v15 = fakeTool(
      tempDir("a3s-fake-tools-"),
      "mkfs.erofs",
      'printf "usage: [options] FILE DIRECTORY\\n --all-root  make all files owned by root\\n\\nAvailable compressors are: lz4hc, lz4\\n"',
    );
    assert.deepEqual(await mkfsErofsCapabilities(v15), { version: "0", tarInput: false, compressors: ["lz4hc", "lz4"] });
    const v18 = fakeTool(
      tempDir("a3s-fake-tools-"),
      "mkfs.erofs",
      'printf "mkfs.erofs (erofs-utils) 1.8.6\\nusage: [options] FILE SOURCE(s)\\n --tar=X     generate a full or index-only image from a tarball(-ish) source\\n\\nAvailable compressors are: lz4, lz4hc, lzma, deflate, zstd\\n"',
    );
    assert.deepEqual(await mkfsErofsCapabilities(v18), { version: "1.8.6", tarInput: true, compressors: ["lz4", "lz4hc", "lzma", "deflate", "zstd"] });
    // 1.8's own layout: one compressor a line, its options indented below it.
    const v186 = fakeTool(
      tempDir("a3s-fake-tools-"),
      "mkfs.erofs",
      'printf "mkfs.erofs (erofs-utils) 1.8.6\\n --tar=X     generate an image from a tarball\\n    [:...]             supported compressors and their option ranges are:\\n                         lz4\\n                         lz4hc\\n                           [,level=<0-12>]\\t\\t(default=9)\\n                         deflate\\n -C#                   specify the size\\n"',
    );
    assert.deepEqual(await mkfsErofsCapabilities(v186), { version: "1.8.6", tarInput: true, compressors: ["lz4", "lz4hc", "deflate"] });
  });

  it("reads mksquashfs: -tar counts from 4.6 only; compressors from -help", async () => {
    const help = '-tar\\t\\t\\tread uncompressed tar file from standard in (stdin)\\n-comp <comp>\\t\\tselect <comp> compression\\n\\t\\t\\tCompressors available:\\n\\t\\t\\t\\tgzip (default)\\n\\t\\t\\t\\tzstd\\n-b <block_size>\\n';
    const script = (v: string): string => `case "$1" in -version) echo "mksquashfs version ${v} (2023/03/25)";; *) printf '%b' '${help}';; esac`;
    const v451 = fakeTool(tempDir("a3s-fake-tools-"), "mksquashfs", script("4.5.1"));
    assert.deepEqual(await mksquashfsCapabilities(v451), { version: "4.5.1", tarInput: false, compressors: ["gzip", "zstd"] });
    const v461 = fakeTool(tempDir("a3s-fake-tools-"), "mksquashfs", script("4.6.1"));
    assert.deepEqual(await mksquashfsCapabilities(v461), { version: "4.6.1", tarInput: true, compressors: ["gzip", "zstd"] });
  });

  it("ext4 needs no mke2fs or root: with only e2fsck to be found, an unprivileged writer builds a clean image", async () => {
    const dir = tempDir("a3s-only-e2fsck-");
    symlinkSync(findExecutable("e2fsck") as string, join(dir, "e2fsck"));
    const tree = new RootfsTree();
    tree.addFile("/a", bytesContent("a"), { uid: 1000, gid: 1000, xattrs: { "trusted.note": "only root may set this on a host" } });
    tree.addDevice("/dev/null", "char", 1, 3);
    const out = join(tempDir("a3s-out-"), "x.ext4");
    await createExt4Writer({ toolDirs: [dir], privileged: false }).write(tree, { tmp: out, final: out }, { epoch: 0, warn: () => undefined });
    const fsck = spawnSync("e2fsck", ["-fn", out], { encoding: "utf8" });
    assert.equal(fsck.status, 0, fsck.stdout);
  });
});
