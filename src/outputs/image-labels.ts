// The labels of the images a3s-rootfs writes, in a module of their own: the
// writer (oci-image.ts) sets them, and the check that a directory is an
// `oci` output of ours (oci-layout-marks.ts) reads them without loading the writer.

/** The label an a3s-built image carries: the guest protocol version its rootfs speaks (docs/guest-protocol.md §13). */
export const LAYOUT_VERSION_LABEL = "vnd.a3s.rootfs.layout.version";
/** The label naming the agent's path in the image (also Entrypoint[0]). */
export const AGENT_LABEL = "vnd.a3s.rootfs.agent";
