#!/usr/bin/env bash
# Installs whatever tsnet needs that this machine lacks, then builds. Idempotent: a second run on a
# ready machine only checks and rebuilds what changed. Used by `npm start`, `npm test`, `npm run bench`.
#   scripts/setup.sh          runtime needs (iproute2 for tests' checks aside, iptables for NAT)
#   scripts/setup.sh --test   also what the tests and benchmarks drive: Docker Engine, containerd,
#                             CNI reference plugins, etcd, busybox (the imported image), dnsmasq,
#                             iperf3, dnsperf, ping, curl, tcpdump (underlay captures)
#   scripts/setup.sh --lab    what the multi-host testbed needs: etcd, curl, ping
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
  say "tsnet manages kernel networking state and must run as root." >&2
  exit 1
fi

packages=(iptables iproute2 procps)
if [ "${1:-}" = "--test" ]; then
  packages+=(iputils-ping curl conntrack docker.io busybox-static containerd containernetworking-plugins etcd-server dnsmasq-base iperf3 dnsperf tcpdump)
elif [ "${1:-}" = "--lab" ]; then
  packages+=(iputils-ping curl etcd-server)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  say "Debian packages present: ${packages[*]}"
fi

# npm packages: install when node_modules is missing or older than the lock file.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages (better-sqlite3 and the addon compile from source; this takes a minute or two)"
  npm ci --no-audit --no-fund
fi

# Native addon: rebuild when missing or when its sources changed.
addon=build/Release/tsnet_native.node
if [ ! -f "$addon" ] || [ -n "$(find native binding.gyp -newer "$addon" -print -quit)" ]; then
  say "building the native netlink addon"
  npm run --silent build:native >/dev/null
fi

say "compiling TypeScript"
npm run --silent build:ts
say "ready"
