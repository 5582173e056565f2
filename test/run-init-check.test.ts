// `run` of an initramfs without an init fails on the host, before anything
// boots, saying so; not with a kernel panic cut off in the console log.
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { requireInitramfsInit } from "../src/boot/image-init.js";
import { isA3sError } from "../src/errors.js";
import { runCli } from "./helpers/cli.js";
import { compileTestBinary } from "./helpers/static-binary.js";
import { tempDir } from "./helpers/temp-dir.js";

function build(name: string, ...flags: string[]): string {
  const out = join(tempDir(), name);
  const r = runCli(["build", "--agent", compileTestBinary(), ...flags, "-o", `cpio:${out}`]);
  assert.equal(r.status, 0, r.stderr);
  return out;
}

describe("run: an image with no init", () => {
  it("an initramfs built with --no-init is refused before the VM starts", () => {
    const image = build("noinit.cpio.gz", "--no-init");
    const r = runCli(["run", image]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`error: ${image} cannot boot: it has no /init \\(and no /sbin/init\\), so the kernel would find no init to run`));
    assert.doesNotMatch(r.stderr, /accelerator|panic/, "nothing was booted");
  });

  it("an initramfs with the A3S init (/init -> sbin/init) passes the check", async () => {
    await requireInitramfsInit("cpio", build("ok.cpio.zst"));
  });

  it("disk images are not checked: the A3S init in the boot initramfs mounts them and stays PID 1", async () => {
    await requireInitramfsInit("erofs", "/nonexistent/never-read.erofs");
    await assert.rejects(requireInitramfsInit("cpio", "/nonexistent/x.cpio"), (e) => isA3sError(e, "ENOENT"));
  });
});
