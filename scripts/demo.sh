#!/usr/bin/env bash
# The main job on a built-in default: install what is needed, then build the
# default scratch rootfs around the built-in probe agent and show what it holds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node dist/src/cli/main.js demo "$@"
