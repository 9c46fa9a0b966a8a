#!/usr/bin/env bash
# The whole test suite: set-up, type check, lint, then every test (unit, contract, integration).
# Tests start real processes on free loopback ports and temp dirs; tests that need a binary that is
# missing (etcd, nginx, haproxy, dockerd, chromium) skip with a message naming
# scripts/install-test-deps.sh, and fail instead when CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "==> type check"
npm run --silent typecheck
echo "==> lint"
npm run --silent lint
echo "==> tests"
npx vitest run "$@"
