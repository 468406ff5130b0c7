#!/usr/bin/env bash
# Install what migcage's build and tests need on Debian (run as root). Idempotent and quiet when
# everything is already there.
set -euo pipefail
need=(runc crun busybox-static bpftool gcc libc6-dev pkg-config util-linux iproute2 jq)
# containerd: `configure containerd` checks its output with `containerd config dump`.
need+=(containerd)
# The engines the end-to-end tests run (tests/{docker,podman,containerd}_e2e.rs); tar and
# coreutils (sha256sum) build their busybox images.
need+=(docker.io podman tar coreutils)
# scripts/package-test.sh: dpkg-shlibdeps for the .deb's dependencies (dpkg-dev), rpm -qlp for
# the .rpm, logrotate -d for the shipped rotation, systemd-analyze verify for the unit.
need+=(dpkg-dev rpm logrotate systemd)
# scripts/fuzz.sh: libfuzzer-sys compiles libFuzzer (C++).
need+=(g++)
# src/host/systemd's bus test runs the D-Bus client against a private dbus-daemon.
need+=(dbus-daemon)
# scripts/vm/ (tests/vm.rs): the throw-away systemd VM, QEMU's software emulation and the
# image's debootstrap.
need+=(qemu-system-x86 debootstrap)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# tests/cri_e2e.rs and docker_e2e.rs: containerd 1.7 and 2.x (CDI, config version 3) and Docker 26
# (CDI) beside Debian 12's 1.6 and 20.10, unpacked into a cache of their own.
"$(dirname "$0")/engine-releases.sh"
if ! command -v cargo >/dev/null 2>&1; then
  echo "deps: cargo (Rust >= 1.85) is required: install it with rustup (https://rustup.rs), then rerun" >&2
  exit 1
fi
