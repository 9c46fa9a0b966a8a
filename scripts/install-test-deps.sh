#!/usr/bin/env bash
# Debian packages the tests start for real: etcd, nginx, haproxy, docker, chromium, wrk.
# Needs root (or sudo). Nothing is downloaded outside Debian's archive.
set -euo pipefail
packages=(etcd-server etcd-client nginx haproxy docker.io chromium firefox-esr wrk curl procps iproute2)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "==> test dependencies already installed"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "==> installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The packages' own services would hold the default ports; tests start private instances instead.
for svc in nginx haproxy etcd docker; do
  $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
