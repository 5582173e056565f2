#!/usr/bin/env bash
# Runs before `npm pack` and `npm publish` (package.json "prepack"): builds
# what the package carries, from scratch, so nothing stale goes in:
#   - dist/src: the library and the CLI, with their type declarations, and
#     the CLI bundled into dist/src/cli/main.bundle.cjs (scripts/bundle-cli.mjs);
#     the JavaScript without comments (below);
#   - guest/build: the static guest programs (init, probe, config-check,
#     thp-off) and SHA256SUMS, which the library checks them against before
#     every use.
# The guest programs are built with musl-gcc only (the gcc -static fallback
# makes larger, glibc programs), twice, and the two builds must be identical
# byte for byte: the same sources and compiler give the same programs.
# Everything goes to stderr: `npm pack --json` prints its report on stdout.
set -euo pipefail
exec >&2
cd "$(dirname "$0")/.."

if ! command -v musl-gcc >/dev/null; then
  echo "prepack: musl-gcc is not installed (Debian package musl-tools; a3s-rootfs doctor --fix installs it in a checkout)" >&2
  exit 1
fi

rm -rf dist/src
# The JavaScript without comments, the type declarations with theirs: the
# comments are a quarter of the compiled library's bytes and nothing reads
# them at run time, while the declarations' JSDoc is the API's documentation
# in an editor. The CLI bundle is made from the same comment-free modules.
# (With them the package came to 1,052,919 bytes packed, over its 1 MiB.)
node node_modules/typescript/bin/tsc -p tsconfig.package.json --removeComments --declaration false
node node_modules/typescript/bin/tsc -p tsconfig.package.json --emitDeclarationOnly
node scripts/bundle-cli.mjs

make -s -C guest clean
make -s -C guest CC=musl-gcc check
again=$(mktemp -d)
trap 'rm -rf "$again"' EXIT
make -s -C guest CC=musl-gcc BUILD="$again" >/dev/null
if ! cmp -s guest/build/SHA256SUMS "$again/SHA256SUMS"; then
  echo "prepack: two builds of the guest programs differ; they must be reproducible:" >&2
  diff guest/build/SHA256SUMS "$again/SHA256SUMS" >&2 || true
  exit 1
fi
echo "prepack: guest programs reproducible:" >&2
cat guest/build/SHA256SUMS >&2
