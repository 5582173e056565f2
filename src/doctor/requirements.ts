/**
 * Every host program or file a3s-rootfs (and its tests) use, the command that
 * needs it, and the Debian package that provides it: the one list
 * `a3s-rootfs doctor` checks and `doctor --fix` installs from.
 */

/**
 * What a requirement is for. `doctor` checks build, sources and run by
 * default (and guest-build in a checkout); `--with` adds the others.
 * - build: `build` and `inspect` (the mkfs tools and their readers, the guest programs);
 * - sources: the optional sources (`busybox`, `debootstrap:`);
 * - run: `run` and `demo` (QEMU, KVM, virtiofsd, a kernel, room in the cache);
 * - tests: what the test suite and the benchmarks run besides;
 * - kernel-build: `a3s-rootfs kernel build`, the microVM kernel;
 * - guest-build: building guest/*.c in a checkout (an installed package carries them built).
 */
export const REQUIREMENT_GROUPS = ["build", "sources", "run", "tests", "kernel-build", "guest-build"] as const;
export type RequirementGroup = (typeof REQUIREMENT_GROUPS)[number];

/** Without a required one the command fails; without an optional one it does less (the check says what). */
export type Need = "required" | "optional";

export interface ToolRequirement {
  /** A command searched on PATH and in the sbin directories, or an absolute file path (a header, a library). */
  readonly command: string;
  /** What the doctor calls it, when not the command itself (a file's short name). */
  readonly name?: string;
  readonly debianPackage: string;
  readonly groups: Readonly<Partial<Record<RequirementGroup, Need>>>;
  /** The a3s-rootfs commands (or the tests) that run it. */
  readonly neededBy: string;
  /** How the tool tells its version (the first dotted number it prints); without it, dpkg's version of the package. */
  readonly versionArgs?: readonly string[];
  /**
   * The oldest version that does everything; older ones are reported as a
   * warning saying what they cannot do (a3s-rootfs works around them where
   * it can, so they do not fail the check).
   */
  readonly minimum?: {
    readonly version: string;
    readonly why: string;
    /** Only a process that is not root misses what the newer version does (root writes a staging directory instead). */
    readonly rootWorksAround?: boolean;
  };
  /** On Debian 12 a new enough version comes from bookworm-backports. */
  readonly backports?: boolean;
}

export const TOOL_REQUIREMENTS: readonly ToolRequirement[] = [
  // build and inspect
  {
    command: "mkfs.erofs",
    debianPackage: "erofs-utils",
    groups: { build: "required" },
    neededBy: "build -o erofs:",
    minimum: { version: "1.7", why: "without --tar, erofs images of trees with owners, devices or security xattrs need root", rootWorksAround: true },
  },
  { command: "fsck.erofs", debianPackage: "erofs-utils", groups: { build: "required" }, neededBy: "inspect of erofs images", versionArgs: ["-V"] },
  { command: "debugfs", debianPackage: "e2fsprogs", groups: { build: "required" }, neededBy: "inspect of ext4", versionArgs: ["-V"] },
  { command: "e2fsck", debianPackage: "e2fsprogs", groups: { build: "required" }, neededBy: "build -o ext4: (checks every image before it is published)", versionArgs: ["-V"] },
  { command: "mke2fs", debianPackage: "e2fsprogs", groups: { run: "optional" }, neededBy: "run --scratch-disk (formats the disk)", versionArgs: ["-V"] },
  {
    command: "mksquashfs",
    debianPackage: "squashfs-tools",
    groups: { build: "required" },
    neededBy: "build -o squashfs:",
    versionArgs: ["-version"],
    minimum: { version: "4.6", why: "without an exact -tar, squashfs images of trees with security xattrs need root", rootWorksAround: true },
  },
  { command: "unsquashfs", debianPackage: "squashfs-tools", groups: { build: "required" }, neededBy: "inspect of squashfs", versionArgs: ["-version"] },
  { command: "zstd", debianPackage: "zstd", groups: { build: "required", tests: "required" }, neededBy: "build -o cpio:*.zst", versionArgs: ["--version"] },
  {
    command: "igzip",
    debianPackage: "isal",
    groups: { build: "optional", tests: "required" },
    neededBy: "build from OCI layouts: gzip layers decoded in their own process, faster (else Node's zlib)",
    versionArgs: ["--version"],
  },
  { command: "getfattr", debianPackage: "attr", groups: { build: "optional", tests: "required" }, neededBy: "inspect of a directory (its xattrs)", versionArgs: ["--version"] },
  // sources
  { command: "busybox", debianPackage: "busybox-static", groups: { sources: "optional", tests: "required" }, neededBy: "build busybox", versionArgs: [] },
  { command: "mmdebstrap", debianPackage: "mmdebstrap", groups: { sources: "optional", tests: "required" }, neededBy: "build debootstrap:SUITE", versionArgs: ["--version"] },
  // run
  {
    command: "qemu-system-x86_64",
    debianPackage: "qemu-system-x86",
    groups: { run: "required" },
    neededBy: "run, demo",
    versionArgs: ["--version"],
    minimum: { version: "10.0", why: "the boot path is tested with QEMU 10; older ones may not boot the microvm machine as configured" },
    backports: true,
  },
  { command: "setpriv", debianPackage: "util-linux", groups: { run: "required" }, neededBy: "run (helpers die with a3s-rootfs)", versionArgs: ["--version"] },
  {
    // virtiofsd --fetch checks the signatures of Debian 13's archive with it.
    command: "/usr/share/keyrings/debian-archive-keyring.gpg",
    name: "debian-archive-keyring",
    debianPackage: "debian-archive-keyring",
    groups: { run: "optional" },
    neededBy: "virtiofsd --fetch (where the host has no virtiofsd)",
  },
  { command: "apt-get", debianPackage: "apt", groups: { run: "required" }, neededBy: "kernel --fetch, virtiofsd --fetch", versionArgs: ["--version"] },
  { command: "dpkg-deb", debianPackage: "dpkg", groups: { run: "required" }, neededBy: "kernel --fetch, virtiofsd --fetch", versionArgs: ["--version"] },
  // tests and benchmarks
  { command: "docker-registry", debianPackage: "docker-registry", groups: { tests: "required" }, neededBy: "tests (a registry on loopback)", versionArgs: ["--version"] },
  { command: "skopeo", debianPackage: "skopeo", groups: { tests: "required" }, neededBy: "tests, benchmarks", versionArgs: ["--version"] },
  { command: "umoci", debianPackage: "umoci", groups: { tests: "required" }, neededBy: "tests, benchmarks", versionArgs: ["--version"] },
  { command: "htpasswd", debianPackage: "apache2-utils", groups: { tests: "required" }, neededBy: "tests (registry auth)" },
  { command: "openssl", debianPackage: "openssl", groups: { tests: "required" }, neededBy: "tests (registry TLS)", versionArgs: ["version"] },
  { command: "hyperfine", debianPackage: "hyperfine", groups: { tests: "required" }, neededBy: "benchmarks", versionArgs: ["--version"] },
  { command: "/usr/bin/time", name: "time", debianPackage: "time", groups: { tests: "required" }, neededBy: "benchmarks (peak memory)" },
  { command: "veritysetup", debianPackage: "cryptsetup-bin", groups: { tests: "required" }, neededBy: "tests (the independent check of build --verity's hash tree)", versionArgs: ["--version"] },
  { command: "cpio", debianPackage: "cpio", groups: { tests: "required" }, neededBy: "tests, benchmarks (GNU cpio beside ours)", versionArgs: ["--version"] },
  { command: "modinfo", debianPackage: "kmod", groups: { tests: "required" }, neededBy: "tests (module metadata beside ours)", versionArgs: ["--version"] },
  { command: "cc", debianPackage: "gcc", groups: { tests: "required" }, neededBy: "tests (test agents)", versionArgs: ["--version"] },
  { command: "/usr/lib/x86_64-linux-gnu/libc.a", name: "libc.a", debianPackage: "libc6-dev", groups: { tests: "required", "kernel-build": "required" }, neededBy: "static test agents, kernel host tools" },
  // kernel build
  { command: "make", debianPackage: "make", groups: { "kernel-build": "required", "guest-build": "required" }, neededBy: "kernel build, make -C guest", versionArgs: ["--version"] },
  // musl-gcc is a wrapper around gcc, and musl-tools does not depend on it.
  { command: "gcc", debianPackage: "gcc", groups: { "kernel-build": "required", "guest-build": "required" }, neededBy: "kernel build, make -C guest", versionArgs: ["--version"] },
  { command: "ld", debianPackage: "binutils", groups: { "kernel-build": "required" }, neededBy: "kernel build", versionArgs: ["--version"] },
  { command: "flex", debianPackage: "flex", groups: { "kernel-build": "required" }, neededBy: "kernel build", versionArgs: ["--version"] },
  { command: "bison", debianPackage: "bison", groups: { "kernel-build": "required" }, neededBy: "kernel build", versionArgs: ["--version"] },
  { command: "bc", debianPackage: "bc", groups: { "kernel-build": "required" }, neededBy: "kernel build", versionArgs: ["--version"] },
  { command: "perl", debianPackage: "perl", groups: { "kernel-build": "required" }, neededBy: "kernel build", versionArgs: ["-e", "print $^V"] },
  { command: "xz", debianPackage: "xz-utils", groups: { "kernel-build": "required" }, neededBy: "kernel build", versionArgs: ["--version"] },
  { command: "patch", debianPackage: "patch", groups: { "kernel-build": "required" }, neededBy: "kernel build (kernel/patches)", versionArgs: ["--version"] },
  { command: "/usr/include/libelf.h", name: "libelf.h", debianPackage: "libelf-dev", groups: { "kernel-build": "required" }, neededBy: "kernel build (objtool)" },
  { command: "/usr/include/openssl/ssl.h", name: "openssl/ssl.h", debianPackage: "libssl-dev", groups: { "kernel-build": "required" }, neededBy: "kernel build (certificate tools)" },
  // guest programs, in a checkout
  { command: "musl-gcc", debianPackage: "musl-tools", groups: { "guest-build": "required" }, neededBy: "make -C guest" },
];

/** Free space the cache needs for a run (a Debian kernel bundle, image blobs) and for building the microVM kernel. */
export const CACHE_SPACE_FOR_RUN = 1024 ** 3;
export const CACHE_SPACE_FOR_KERNEL_BUILD = 4 * 1024 ** 3;
