#!/usr/bin/env bash
# The main job: sets teal up, starts it on the embedded defaults, deploys examples/hello v1, then
# deploys v2 under keep-alive load, prints what happened and the URLs, and serves until Ctrl-C.
#   scripts/demo.sh            (options: --connections N, --exit, --keep, --config FILE)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec node dist/demo/main.js "$@"
