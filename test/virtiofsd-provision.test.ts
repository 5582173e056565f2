// Provisioning virtiofsd from Debian 13 into a cache: the real apt, the real
// archive, a fresh cache directory. No VM boots here (test/virtiofs.test.ts
// boots with it).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { bundleCommand, readManifest, sha256File } from "../src/boot/virtiofsd-bundle.js";
import { provisionVirtiofsd } from "../src/boot/virtiofsd-provision.js";
import { cachedVirtiofsd } from "../src/boot/virtiofsd.js";
import { tempDir } from "./helpers/temp-dir.js";

/** Every entry under `dir` with its modification time: what "apt's state did not change" means here. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = statSync(p, { throwIfNoEntry: false });
      if (!st) continue;
      out.push(`${p} ${st.mtimeMs}`);
      if (st.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.sort();
}

describe("provisioning virtiofsd from Debian 13", () => {
  it("fetches virtiofsd, its loader and libraries with a private apt, records every hash, and leaves the host's apt alone", async () => {
    const cache = tempDir("a3s-test-vfsd-");
    const aptBefore = snapshot("/etc/apt");
    const messages: string[] = [];
    const dir = await provisionVirtiofsd(cache, (m) => messages.push(m));
    assert.deepEqual(snapshot("/etc/apt"), aptBefore, "the host's apt configuration is unchanged");
    // (Only trixie's lists are checked: another process may update the host's own at any time.)
    assert.deepEqual(readdirSync("/var/lib/apt/lists").filter((n) => n.includes("trixie")), [], "no trixie list in the host's apt state");

    const m = await readManifest(dir);
    assert.ok(m);
    assert.deepEqual(m.packages.map((p) => p.name).sort(), ["libc6", "libcap-ng0", "libgcc-s1", "libseccomp2", "virtiofsd"]);
    assert.ok(m.packages.every((p) => /^[0-9a-f]{64}$/.test(p.sha256) && p.filename.startsWith("pool/main/")));
    const paths = m.files.map((f) => f.path).sort();
    assert.ok(paths.includes("bin/virtiofsd") && paths.includes(m.loader) && paths.includes("lib/libc.so.6"), paths.join(" "));
    for (const f of m.files) assert.deepEqual(await sha256File(join(dir, f.path)), { sha256: f.sha256, size: f.size }, f.path);
    assert.equal(readdirSync(join(cache, "virtiofsd")).filter((n) => n.startsWith(".")).length, 0, "no unfinished fetch is left");

    // The bundle runs on this host through its own loader.
    const cmd = bundleCommand(dir, m);
    assert.match(execFileSync(cmd.file, [...cmd.prefix, "--version"], { encoding: "utf8" }), /^virtiofsd \d+\.\d+/);
    assert.equal((await cachedVirtiofsd(cache))?.path, dir);

    // Fetching again with the same versions keeps the bundle.
    const again: string[] = [];
    assert.equal(await provisionVirtiofsd(cache, (x) => again.push(x)), dir);
    assert.ok(again.some((x) => x.includes("already in the cache and intact")), again.join("\n"));
    assert.ok(!again.some((x) => x.includes("downloading")), again.join("\n"));
  });
});
