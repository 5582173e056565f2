// The Debian bookworm minbase tarball the OCI benchmarks build their images
// from: made once by mmdebstrap, cached in /tmp, and shared between the
// benchmarks under one flock so two of them never bootstrap at once.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const MINBASE_DIR = "/tmp/a3s-bench-minbase";
export const MINBASE_TAR = join(MINBASE_DIR, "rootfs.tar");

export function minbaseTar(): string {
  if (!existsSync(MINBASE_TAR)) {
    mkdirSync(MINBASE_DIR, { recursive: true });
    process.stderr.write("bench: mmdebstrap --variant=minbase bookworm (a few minutes, once)\n");
    // mmdebstrap picks the output format from the extension, so the temporary ends in .tar too.
    const script = `if [ ! -f ${MINBASE_TAR} ]; then mmdebstrap --quiet --variant=minbase bookworm ${MINBASE_TAR}.part.tar && mv ${MINBASE_TAR}.part.tar ${MINBASE_TAR}; fi`;
    execFileSync("flock", [`${MINBASE_DIR}.lock`, "sh", "-c", script], { stdio: ["ignore", "ignore", "inherit"] });
  }
  return MINBASE_TAR;
}
