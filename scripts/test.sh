#!/usr/bin/env bash
# The test command: installs and builds what the tests need (scripts/setup.sh),
# then lints, typechecks and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run --silent lint
mapfile -t files < <(find dist/test -name '*.test.js' | sort)
node --test --test-concurrency=2 "${files[@]}"
bash scripts/test-rootless.sh
