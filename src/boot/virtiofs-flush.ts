/**
 * Whether the guest kernel sends FUSE_FLUSH on every close of a file on a
 * virtio-fs share (kernel/patches/0002-virtiofs-no-flush-param.patch).
 *
 * A close on virtio-fs costs two synchronous round trips to the host,
 * FLUSH then RELEASE; under TCG each is about 0.1 ms, and an agent working
 * in /workspace closes files thousands of times (bench/workspace-io:
 * close is about a quarter of creating and reading back 2,000 small
 * files). virtiofsd answers FLUSH with close(dup(fd)): it releases POSIX
 * locks virtiofsd holds (none for the guest, whose locks stay in its own
 * kernel) and, on a network filesystem, writes back the host's cache. The
 * shares run without FUSE's writeback cache, so each write() has already
 * reached the host's file when it returns, and RELEASE still closes the
 * host's descriptor: on a local filesystem the host sees the same bytes at
 * the same moment without FLUSH (docs/boot.md, "Coherence: what each side
 * sees, and when").
 *
 * The microVM kernel built with the patch takes `virtiofs.no_flush=1`;
 * Debian's kernel, and a microVM kernel built before the patch, keep
 * FLUSH.
 */

/** The file of the kernel patch that adds the parameter. */
export const VIRTIOFS_NO_FLUSH_PATCH = "0002-virtiofs-no-flush-param.patch";

/** The parameter as the kernel's command line carries it (a built-in module's parameter: module name, dot, name). */
export const VIRTIOFS_NO_FLUSH_PARAM = "virtiofs.no_flush=1";

/** True for a built kernel that has the patch (the cache records each kernel's patches). */
export function skipsVirtiofsFlush(kernel: { readonly patches?: readonly string[] }): boolean {
  return kernel.patches?.includes(VIRTIOFS_NO_FLUSH_PATCH) ?? false;
}
