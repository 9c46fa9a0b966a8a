#!/usr/bin/env bash
# Installs teal's npm dependencies (npm ci) and builds dist/. Skips npm ci when node_modules already
# matches package-lock.json, since better-sqlite3 compiles from source here (about a minute).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null 2>&1; then
  echo "teal needs Node.js 20 or newer (node was not found)" >&2
  exit 2
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "teal needs Node.js 20 or newer (found $(node --version))" >&2
  exit 2
fi

stamp=node_modules/.teal-lock-sha
want=$( (cat package-lock.json; node --version) | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> npm ci (first run compiles better-sqlite3; about a minute)"
  npm ci --no-audit --no-fund
  echo "$want" > "$stamp"
else
  echo "==> dependencies up to date; building"
  npm run --silent build
fi
