#!/bin/bash
# Boot the guest init + probe in QEMU microvm with a Debian kernel and check
# the guest protocol end to end (docs/guest-protocol.md). No root needed.
#
#   guest/boot-smoke.sh [KERNEL_ROOT]
#
# KERNEL_ROOT: an extracted linux-image .deb (boot/vmlinuz-*, lib/modules/*).
# Without it the current Debian linux-image-amd64 is fetched with
# `apt-get download` into the work directory.
# Env: WORK (default: a new temp dir, kept), A3S_ACCEL=kvm to use KVM
# (default TCG), A3S_APPEND (extra kernel parameters).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
WORK=${WORK:-$(mktemp -d /tmp/a3s-boot-smoke.XXXXXX)}
mkdir -p "$WORK"
fail() { echo "boot-smoke: FAIL: $*" >&2; echo "boot-smoke: files in $WORK" >&2; exit 1; }
for tool in qemu-system-x86_64 cpio dpkg-deb; do
  command -v $tool >/dev/null || fail "$tool not found (Debian: qemu-system-x86, cpio, dpkg)"
done

make -s -C "$here"

# --- kernel -----------------------------------------------------------------
kroot=${1:-}
if [ -z "$kroot" ]; then
  kroot=$WORK/kernel
  if [ ! -d "$kroot/boot" ]; then
    pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image/{print $2; exit}')
    [ -n "$pkg" ] || fail "cannot resolve linux-image-amd64 (apt-get update?)"
    (cd "$WORK" && apt-get download "$pkg" >/dev/null) || fail "apt-get download $pkg"
    dpkg-deb -x "$WORK/$pkg"_*.deb "$kroot"
  fi
fi
vmlinuz=$(ls "$kroot"/boot/vmlinuz-* | head -1)
moddir=$(ls -d "$kroot"/lib/modules/* | head -1)

# --- initramfs ----------------------------------------------------------------
mods="virtio_ring virtio virtio_mmio virtio_console 9pnet 9pnet_virtio netfs fscache 9p fuse virtiofs"
root=$WORK/root
rm -rf "$root" "$WORK/ws" && mkdir -p "$WORK/ws"
mkdir -p "$root"/{dev,proc,sys,tmp,run,var/tmp,var/log,workspace,skills,etc/a3s,a3s/agent,sbin,lib/modules/a3s}
cp "$here/build/init" "$root/sbin/init" && ln -s sbin/init "$root/init"
cp "$here/build/probe" "$root/a3s/agent/a3s-box-code"
conf=$root/etc/a3s/guest.conf
echo "a3s-guest-config 1" > "$conf"
for m in $mods; do
  f=$(find "$moddir/kernel" -name "$m.ko*" | head -1)
  [ -n "$f" ] || fail "module $m not found under $moddir (built in? then drop it)"
  case $f in   # init expects uncompressed modules: decompress here
    *.xz) xz -dc "$f" > "$root/lib/modules/a3s/$m.ko" ;;
    *.zst) zstd -qdc "$f" > "$root/lib/modules/a3s/$m.ko" ;;
    *) cp "$f" "$root/lib/modules/a3s/$m.ko" ;;
  esac
  echo "module=/lib/modules/a3s/$m.ko" >> "$conf"
done
printf 'share=workspace:/workspace:rw\nshare=skills:/skills:ro,optional\n' >> "$conf"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) > "$WORK/initrd.cpio"

# --- boot ---------------------------------------------------------------------
append="console=ttyS0 panic=-1 quiet ${A3S_APPEND:-}"
accel=()
if [ "${A3S_ACCEL:-tcg}" = kvm ]; then
  accel=(-accel kvm -cpu host)
else # TCG: skip the PIT-based TSC calibration that can hang a busy host
  khz=$(awk -F: '/^cpu MHz/{printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
  [ -n "$khz" ] && append="$append tsc_early_khz=$khz"
fi
append="$append a3s.arg=--write a3s.arg=/workspace/smoke.txt a3s.arg=--spawn-orphans a3s.arg=3"
append="$append a3s.arg=--stderr a3s.arg=\"hello stderr\" a3s.arg=--exit a3s.arg=7"
rm -f "$WORK"/{stdout,stderr,control,console}.log
start=$(date +%s%N)
timeout 300 qemu-system-x86_64 -M microvm -m 512 -nodefaults -no-user-config -nographic \
  -no-reboot "${accel[@]}" -kernel "$vmlinuz" -initrd "$WORK/initrd.cpio" -append "$append" \
  -serial file:"$WORK/console.log" \
  -device virtio-serial-device \
  -chardev file,id=out,path="$WORK/stdout.log" -device virtconsole,chardev=out \
  -chardev file,id=err,path="$WORK/stderr.log" -device virtconsole,chardev=err \
  -chardev file,id=ctl,path="$WORK/control.log" -device virtconsole,chardev=ctl \
  -fsdev local,id=ws,path="$WORK/ws",security_model=none \
  -device virtio-9p-device,fsdev=ws,mount_tag=workspace \
  || fail "qemu exited with $?"
wall_ms=$(( ($(date +%s%N) - start) / 1000000 ))

# --- checks -------------------------------------------------------------------
out=$(cat "$WORK/stdout.log"); ctl=$(cat "$WORK/control.log")
grep -q '^a3s agent-exit [0-9.]* 7$' <<<"$ctl" || fail "no 'agent-exit ... 7' on the control channel"
grep -q '"root":{"writable":false,"errno":30' <<<"$out" || fail "/ is not read-only (EROFS)"
grep -q '"orphans":{"spawned":3,"reaped":3' <<<"$out" || fail "orphans not reaped"
grep -q '"shell_found":false' <<<"$out" || fail "a shell was found"
[ "$(wc -l < "$WORK/stdout.log")" = 1 ] || fail "stdout has more than the probe's JSON line"
grep -qx 'hello stderr' "$WORK/stderr.log" || fail "stderr channel"
[ -f "$WORK/ws/smoke.txt" ] || fail "the workspace write is not visible on the host"
t() { awk -v e="$1" '$2 == e {print $3}' <<<"$ctl"; }
echo "boot-smoke: OK ($(basename "$vmlinuz"), ${A3S_ACCEL:-tcg})"
echo "  init-start $(t init-start) ms, agent-start $(t agent-start) ms," \
  "init->agent $(awk -v a="$(t init-start)" -v b="$(t agent-start)" 'BEGIN{printf "%.1f", b-a}') ms," \
  "poweroff $(t poweroff) ms (guest clock); qemu wall ${wall_ms} ms"
echo "  files in $WORK"
