import { chmodSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";

/** A fresh temporary directory, removed when the test file finishes. */
export function tempDir(prefix = "a3s-test-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  after(() => removeAll(dir));
  return dir;
}

/**
 * Removes a test's directory. As non-root a rootfs written there keeps its
 * read-only directories (0555), which refuse the removal of their entries,
 * so on failure every directory is made writable first.
 */
function removeAll(dir: string): void {
  try {
    rmSync(dir, { recursive: true, force: true });
    return;
  } catch {
    // fall through
  }
  const open = (d: string): void => {
    try {
      chmodSync(d, 0o700);
    } catch {
      return;
    }
    for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) open(join(d, e.name));
  };
  open(dir);
  rmSync(dir, { recursive: true, force: true });
}
