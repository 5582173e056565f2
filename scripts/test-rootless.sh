#!/usr/bin/env bash
# Rootless is tested, not claimed: the output tests run a second time as an
# unprivileged user (nobody, no supplementary groups), and
# rootless-outputs.test.js compares that user's outputs, byte for byte, with
# the hashes of the same build done as root just before. Run as root, after
# `npm run build` (scripts/test.sh does both).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "test-rootless: not root, so this run is already unprivileged; nothing more to do" >&2
  exit 0
fi
user=nobody
group=$(id -gn "$user")
work=$(mktemp -d "${TMPDIR:-/tmp}/a3s-rootless-run-XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
node dist/test/fixtures/record-output-hashes.js "$work/root-hashes.json"
mkdir "$work/tmp"
chown "$user:$group" "$work/tmp"
files=(tar-output cpio-output dir-output ext4-output erofs-output squashfs-output image-outputs
  atomic-output interrupts output-safety cli-checks rootless-outputs)
paths=()
for f in "${files[@]}"; do paths+=("dist/test/$f.test.js"); done
# The worktree must be readable by that user (it is: 755 and 644 as checked out).
setpriv --reuid="$user" --regid="$group" --clear-groups \
  env HOME="$work/tmp" TMPDIR="$work/tmp" A3S_CACHE_DIR="$work/tmp/cache" A3S_ROOT_OUTPUT_HASHES="$work/root-hashes.json" \
  node --test --test-concurrency=2 "${paths[@]}"
