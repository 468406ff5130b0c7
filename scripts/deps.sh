#!/usr/bin/env bash
# Install what migcage's build and tests need on Debian (run as root). Idempotent and quiet when
# everything is already there.
set -euo pipefail
need=(runc crun busybox-static bpftool gcc libc6-dev pkg-config util-linux iproute2 jq)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "deps: cargo (Rust >= 1.80) is required: install it with rustup (https://rustup.rs), then rerun" >&2
  exit 1
fi
