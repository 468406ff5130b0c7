#!/usr/bin/env bash
# Where the hook's time goes: runs PROFILE_RUNS (default 40) runc containers per case, each with
# `migcage hook prestart` wrapped by benches/hookwrap.c and MIGCAGE_PROFILE set (src/profile.rs),
# and prints, per case, the median microseconds of each stage the hook passes, the rest of the
# hook's wall time (exec and the exit: the wrapper's total minus the stages) and wait4's CPU
# times. Run as root on Debian; release build; nothing is written to the repository.
#
#   scripts/profile-hook.sh                 # a100-7x1g and dgx-8x7; devices only and utility,compute;
#                                           # then the runtime wrapper's own stages on create, then
#                                           # `cdi generate` on dgx-8x7 (procfs, caps-tree, nvml, verify,
#                                           # snapshot-save, driver-files, generate, text, write)
#
# Stages, in order (src/profile.rs names them where they end): start (exec, dynamic loading,
# Rust's start-up: from the wrapper's fork to main), cli, config, logging, state (the runtime's
# state on stdin), config.json, forged-checks (a rootfs or pid that no runtime sends, refused),
# request, snapshot-read (the inventory snapshot read and parsed), snapshot (checked against
# procfs, for the GPUs the request names), driver-files, plan, container-prep, container (setns
# into the container's mount namespace and back: nodes, mounts, links, ld cache),
# runtime-detect, cgroup, systemd, log-record.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
runs=${PROFILE_RUNS:-40}
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "profile-hook: PROFILE_RUNS must be a positive number, not '$runs'" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "profile-hook: run as root (simulate makes device nodes; runc runs containers)" >&2; exit 2; }
target=${CARGO_TARGET_DIR:-$repo/target}
echo "profile-hook: release build (cargo build --release --workspace)" >&2
cargo build --release --workspace --quiet
bin=$target/release/migcage
work=$(mktemp -d /tmp/migcage-profile.XXXXXX)
# shellcheck source=lib/bench-common.sh
. "$repo/scripts/lib/bench-common.sh"
trap 'cleanup_containers; rm -rf "$work"' EXIT
gcc -O2 -Wall -o "$work/hookwrap" benches/hookwrap.c
gcc -O2 -Wall -o "$work/lifecycle" benches/lifecycle.c

# median FILE: the median of the numbers in FILE (one a line).
median() { sort -n "$1" | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else print v[int((NR + 1) / 2)] }'; }

# stage_medians CASE PROF: print the median of each stage of the profile lines in PROF (in the
# order of its first line), with CASE.<stage> as scratch files; their sum goes to $stages_total.
stage_medians() {
  local case=$1 prof=$2 stages s us
  stages_total=0
  stages=$(head -n1 "$prof" | tr ' ' '\n' | cut -d= -f1)
  for s in $stages; do
    tr ' ' '\n' <"$prof" | awk -F= -v s="$s" '$1 == s { print $2 }' >"$case.$s"
    us=$(median "$case.$s")
    stages_total=$((stages_total + us))
    printf '  %-16s %6d\n' "$s" "$us"
  done
}

# profile TOPOLOGY CONFIG LABEL ENV...: one case's table.
profile() {
  local topo=$1 config=$2 label=$3; shift 3
  local case=$work/${topo}-${label//[^a-z]/_}
  local prof=$case.prof wrap=$case.wrap b=$case.bundle
  BUNDLE_HOOK_ENV="[\"MIGCAGE_PROFILE=$prof\"]" \
    bundle "$b" "$config" "[\"$work/hookwrap\", \"hookwrap\", \"$wrap\", \"$bin\", \"hook\", \"prestart\"]" "$@"
  run_container v1 "$b" >/dev/null # warm-up
  : >"$prof"; : >"$wrap"
  for ((i = 0; i < runs; i++)); do run_container v1 "$b" >/dev/null; done
  awk '$3 != 0 { bad = 1 } END { exit bad }' "$wrap" || { echo "profile-hook: a hook failed ($topo $label)" >&2; exit 1; }
  [[ $(wc -l <"$prof") == "$runs" ]] || { echo "profile-hook: $(wc -l <"$prof") profile lines for $runs runs ($topo $label): is MIGCAGE_PROFILE reaching the hook?" >&2; exit 1; }
  echo
  echo "$topo, $label ($runs runs; median µs)"
  stage_medians "$case" "$prof"
  local total=$stages_total
  awk '{ print int($1 / 1000) }' "$wrap" >"$case.wall"
  awk '{ print $4 }' "$wrap" >"$case.user"
  awk '{ print $5 }' "$wrap" >"$case.sys"
  local wall; wall=$(median "$case.wall")
  printf '  %-16s %6d\n' "(exit, rest)" $((wall > total ? wall - total : 0))
  printf '  %-16s %6d   (hookwrap: fork to wait, median)\n' "wall" "$wall"
  printf '  %-16s %6d / %d   (wait4, the hook and any child it waited for)\n' "cpu user/sys" "$(median "$case.user")" "$(median "$case.sys")"
}

# profile_wrapper TOPOLOGY CONFIG ENV...: the runtime wrapper's stages on `create`, as engines
# send it (benches/lifecycle.c: create, start, wait, delete of a fresh bundle each time): from
# its start through the runtime's create, which it runs as its child (`runtime-create`), to the
# work inside the created container and the leases handed to the init. The line of each of
# the other commands (start, delete: passed through) is left out.
profile_wrapper() {
  local topo=$1 config=$2; shift 2
  local case=$work/${topo}-wrapper prof b
  prof=$case.prof b=$case.bundle
  bundle "$b" "$config" '[]' "$@"
  cp "$b/config.json" "$case.pristine.json"
  : >"$prof.all"
  for ((i = 0; i <= runs; i++)); do
    cp "$case.pristine.json" "$b/config.json"
    MIGCAGE_CONFIG=$config MIGCAGE_PROFILE=$prof.all \
      run_lifecycle v1 "$b" "$bin" runtime >/dev/null
  done
  grep 'runtime-create=' "$prof.all" | sed 1d >"$prof" # create's lines, less the warm-up
  [[ $(wc -l <"$prof") == "$runs" ]] || { echo "profile-hook: $(wc -l <"$prof") wrapper create lines for $runs runs: is MIGCAGE_PROFILE reaching the wrapper?" >&2; exit 1; }
  echo
  echo "$topo, runtime wrapper on create, utility,compute ($runs runs; median µs, runc's create included)"
  stage_medians "$case" "$prof"
  printf '  %-16s %6d\n' "(all of create)" "$stages_total"
}

# profile_cdi TOPOLOGY: the stages of `migcage cdi generate` (full discovery through NVML, the
# snapshot rewritten, driver files, the spec built, its YAML text, the atomic write), each run
# exec'd by hookwrap so that `start` is measured as for the hook.
profile_cdi() {
  local topo=$1 case=$work/$1-cdi prof wrap
  prof=$case.prof wrap=$case.wrap
  local config=$work/$topo/config.toml
  MIGCAGE_CONFIG=$config "$bin" cdi generate --output "$case.yaml" >/dev/null # warm-up
  : >"$prof"; : >"$wrap"
  for ((i = 0; i < runs; i++)); do
    MIGCAGE_CONFIG=$config MIGCAGE_PROFILE=$prof \
      "$work/hookwrap" "$wrap" "$bin" cdi generate --output "$case.yaml" >/dev/null
  done
  awk '$3 != 0 { bad = 1 } END { exit bad }' "$wrap" || { echo "profile-hook: cdi generate failed ($topo)" >&2; exit 1; }
  echo
  echo "$topo, cdi generate ($runs runs; median µs)"
  stage_medians "$case" "$prof"
  local total=$stages_total
  awk '{ print int($1 / 1000) }' "$wrap" >"$case.wall"
  local wall; wall=$(median "$case.wall")
  printf '  %-16s %6d\n' "(exit, rest)" $((wall > total ? wall - total : 0))
  printf '  %-16s %6d   (hookwrap: fork to wait, median)\n' "wall" "$wall"
}

echo "profile-hook: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
for topo in a100-7x1g dgx-8x7; do
  root=$(simulate "$topo")
  profile "$topo" "$root/config-devices-only.toml" "devices only" NVIDIA_VISIBLE_DEVICES=0:1
  profile "$topo" "$root/config.toml" "utility,compute" NVIDIA_VISIBLE_DEVICES=0:1 NVIDIA_DRIVER_CAPABILITIES=utility,compute
done
root=$work/a100-7x1g # simulated above
profile_wrapper a100-7x1g "$root/config.toml" NVIDIA_VISIBLE_DEVICES=0:1 NVIDIA_DRIVER_CAPABILITIES=utility,compute
profile_cdi dgx-8x7
