#!/usr/bin/env bash
# Installs everything a3s-rootfs and its tests need on a fresh Debian 12/13
# machine, and does nothing when it is all there already:
#   - Debian packages: the mkfs tools, GNU tar/cpio readers, zstd, musl for the
#     guest programs, QEMU for boots (e2fsprogs >= 1.47.1 from bookworm-backports
#     on Debian 12, for `mke2fs -d` from a tarball);
#   - npm packages (npm ci);
#   - the build: TypeScript to dist/, the static guest programs to guest/build/;
#   - the guest kernels, into the user's cache: Debian's generic kernel, and
#     the microVM kernel built from Debian's linux-source (minutes, once per
#     source version and config; later runs find it cached).
#   - virtiofsd, where the host has none (Debian 13's, into the user's cache).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*" >&2; }

# command -> Debian package
declare -A TOOLS=(
  [cpio]=cpio [zstd]=zstd [mkfs.erofs]=erofs-utils [fsck.erofs]=erofs-utils [mksquashfs]=squashfs-tools
  [unsquashfs]=squashfs-tools [debugfs]=e2fsprogs [getfattr]=attr [musl-gcc]=musl-tools [busybox]=busybox-static
  [qemu-system-x86_64]=qemu-system-x86 [hyperfine]=hyperfine [modinfo]=kmod [setpriv]=util-linux
  [docker-registry]=docker-registry [skopeo]=skopeo [umoci]=umoci [htpasswd]=apache2-utils [openssl]=openssl
  [mmdebstrap]=mmdebstrap
  # Building the microVM kernel (a3s-rootfs kernel build).
  [make]=make [gcc]=gcc [flex]=flex [bison]=bison [bc]=bc [perl]=perl
)
# Headers the kernel's host tools build against: objtool (libelf), and the
# certificate tools kbuild builds when a config asks for module signing (openssl).
declare -A HEADERS=([/usr/include/libelf.h]=libelf-dev [/usr/include/openssl/ssl.h]=libssl-dev)
TIME_BIN=/usr/bin/time

missing=()
for tool in "${!TOOLS[@]}"; do
  PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 || missing+=("${TOOLS[$tool]}")
done
[ -x "$TIME_BIN" ] || missing+=(time)
for header in "${!HEADERS[@]}"; do
  [ -e "$header" ] || missing+=("${HEADERS[$header]}")
done

e2fs_ok() {
  local v
  v=$(/usr/sbin/mke2fs -V 2>&1 | awk 'NR==1{print $2}') || return 1
  dpkg --compare-versions "${v:-0}" ge 1.47.1
}

. /etc/os-release
# On Debian 12 two packages come from bookworm-backports: e2fsprogs >= 1.47.1
# (mke2fs -d reads a tarball) and QEMU 10 (the version the boot path is tested with).
backports=()
if [ "${VERSION_CODENAME:-}" = bookworm ]; then
  e2fs_ok || backports+=(e2fsprogs)
  rest=()
  for p in "${missing[@]}"; do
    if [ "$p" = qemu-system-x86 ]; then backports+=(qemu-system-x86); else rest+=("$p"); fi
  done
  missing=("${rest[@]}")
fi

if [ ${#missing[@]} -gt 0 ] || [ ${#backports[@]} -gt 0 ] || ! e2fs_ok; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "missing Debian packages: $(printf '%s\n' "${missing[@]}" "${backports[@]}" | sort -u | tr '\n' ' ')"
    [ ${#backports[@]} -gt 0 ] && log "(on Debian 12, ${backports[*]} from bookworm-backports)"
    log "install them as root (apt-get install ...) and run this again"
    exit 1
  fi
  if [ ${#backports[@]} -gt 0 ] && ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    log "adding bookworm-backports"
    echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/a3s-bookworm-backports.list
  fi
  log "apt-get update"
  apt-get update -qq >/dev/null 2>&1 || log "apt-get update reported errors (an unreachable extra source?); going on"
  if [ ${#missing[@]} -gt 0 ]; then
    pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
    log "installing $pkgs"
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  fi
  if [ ${#backports[@]} -gt 0 ]; then
    log "installing ${backports[*]} from bookworm-backports"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports "${backports[@]}" >/dev/null
  fi
  e2fs_ok || { log "e2fsprogs >= 1.47.1 is still missing"; exit 1; }
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi

log "building"
npm run --silent build
make -s -C guest >/dev/null
# The guest kernels: Debian's, fetched once with apt-get download and cached
# per version; then the microVM kernel, built once per source version and
# config hash (minutes; `run` prefers it once it is there).
node dist/src/cli/main.js kernel --fetch >/dev/null
# virtiofsd for virtio-fs shares: the host's where packaged (Debian 13), else
# Debian 13's, fetched with a private apt configuration into the cache (docs/boot.md).
node dist/src/cli/main.js virtiofsd --fetch >/dev/null
log "building the microVM kernel (minutes the first time; cached after)"
node dist/src/cli/main.js kernel build >/dev/null
