#!/usr/bin/env bash
# Installs everything a3s-rootfs and its tests need on a fresh Debian 12/13
# machine, and does nothing when it is all there already. The host set-up is
# `a3s-rootfs doctor --fix` (the same path a user of the npm package takes);
# this script only does what the doctor needs to run first, in a checkout:
#   1. npm packages (npm ci) and the TypeScript build (dist/);
#   2. a3s-rootfs doctor --fix --with all: every Debian package the commands,
#      the tests and the kernel build need (QEMU 10 from bookworm-backports
#      on Debian 12; musl-tools for the guest programs), the guest
#      programs, virtiofsd where the host has none, and
#      the kernels, into the user's cache: Debian's, and the microVM kernel
#      (minutes, once per source version and config; later runs find it);
#   3. make -C guest, which rebuilds guest programs whose sources changed.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*" >&2; }

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi
log "building"
npm run --silent build

# The doctor's table only when something is left to do: it says what, and how.
if ! report=$(node dist/src/cli/main.js doctor --fix --with all); then
  printf '%s\n' "$report" >&2
  log "the host is not ready (the table above says what is missing)"
  exit 1
fi
make -s -C guest >/dev/null
