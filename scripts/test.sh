#!/usr/bin/env bash
# The whole test suite: unit, integration and end-to-end tests against real runtimes on the
# simulated GPU. Run as root on Debian (it installs runc, crun and friends; e2e tests need root).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# Build every artifact first: the tests run the migcage binary, the simulated libnvidia-ml and the
# nvidia-smi stand-in, which 'simulate' finds next to the migcage binary.
cargo build --workspace --all-targets --quiet
# A test that cannot run here says so (tests/common's `skip`) into this log; after the run,
# every skip is printed and the suite fails on any not on tests/skips.allow.
MIGCAGE_SKIP_LOG=$(mktemp -t migcage-skips.XXXXXX)
export MIGCAGE_SKIP_LOG
trap 'rm -f "$MIGCAGE_SKIP_LOG"' EXIT
cargo test --workspace --no-fail-fast 2>&1
scripts/check-skips.sh "$MIGCAGE_SKIP_LOG"
# A real systemd host: a throw-away QEMU VM (systemd 252 as PID 1, pure cgroup v2, its own
# kernel; image cached under /var/cache/migcage-vm, keyed by its recipe) booted once, every
# engine's scenario probed before and after `systemctl daemon-reload` (tests/vm.rs holds the
# expected table). Minutes under software emulation, so it is an ignored test run here.
cargo test --test vm -- --ignored --nocapture 2>&1
# Every fuzz target for a bounded time (MIGCAGE_FUZZ_SECONDS each, 20 by default; fuzz/ is its
# own workspace, so the lines above do not build it).
scripts/fuzz.sh
# Last: it installs the .deb on this machine (its hooks.d file would act on the podman tests'
# containers), smoke-tests it on a simulated GPU and purges it.
scripts/package-test.sh
