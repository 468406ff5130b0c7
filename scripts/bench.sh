#!/usr/bin/env bash
# Whole-process benchmarks of migcage on simulated MIG hosts, with real runc containers. Run as
# root on Debian:
#
#   scripts/bench.sh                  # BENCH_RUNS=40 containers per figure by default
#
# The interleaved container-start run, whose ratios are the targets, has BENCH_START_RUNS rounds
# (4 x BENCH_RUNS by default): one container start on this machine varies by a third from one
# to the next, and the median of the pairwise ratios settles only over more rounds.
#
# It prints a Markdown table and writes it to docs/performance.md, the committed results page
# that the README quotes (BENCH_OUT writes elsewhere, for a run that is not to be committed). Release build. What it measures:
#   - the hook's wall time per container (p50, p95), measured around the hook process by
#     benches/hookwrap.c (fork, exec, dynamic loading and all), on a100-7x1g and dgx-8x7
#     alternating container by container (their pairwise ratio is a target): devices
#     only (a driver_root without driver files: nothing to mount), with the driver files of
#     NVIDIA_DRIVER_CAPABILITIES=utility,compute (also what an unset variable means), on cgroup v1
#     and v2, and without the inventory snapshot (NVML at every start), for comparison;
#   - the hook's peak RSS (wait4's ru_maxrss: the hook, or a setns child where it needed one,
#     whichever is larger);
#   - container start, on cgroup v1 and v2, in one interleaved run: the floor (a container asking
#     for nothing), the static spec (the hook's device nodes and rules, and with utility,compute
#     its bind mounts, written into config.json: the cheapest migcage could be), the hook (devices
#     only, utility,compute) and runtime mode, both as engines drive it (create, start, wait,
#     delete: benches/lifecycle.c, a subreaper as containerd's shim and conmon are, against the
#     static spec driven the same way: the runtime mode target) and by `migcage runtime run`;
#     each target a median of pairwise ratios (one round against the same round; every other
#     round in reverse order), with its spread; the bundles on a tmpfs, where engines keep theirs;
#   - what the runtime wrapper adds to a command it passes through (`state`), against runc's own;
#   - `list`, `refresh` and `cdi generate` on dgx-8x7 (full NVML discovery; the simulated NVML);
#   - `mig apply` of a full layout (8 GPUs x 7 1g.5gb, 56 creates) on dgx-8x-empty, through the
#     simulated NVML (at most 10 runs: each is 56 creates and, untimed, 56 destroys);
#   - a container start by profile that makes its instance on demand (a100-empty,
#     create_on_demand and destroy_on_release) against one that finds a free instance
#     (a100-7x1g), alternating, each with its poststop.
# The in-process parts have their own benchmarks: cargo bench --bench pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
runs=${BENCH_RUNS:-40}
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "bench: BENCH_RUNS must be a positive number, not '$runs'" >&2; exit 2; }
start_runs=${BENCH_START_RUNS:-$((runs * 4))}
[[ $start_runs =~ ^[1-9][0-9]*$ ]] || { echo "bench: BENCH_START_RUNS must be a positive number, not '$start_runs'" >&2; exit 2; }
if [[ $(id -u) != 0 ]]; then
  echo "bench: run as root (simulate makes device nodes; runc runs containers)" >&2
  exit 2
fi
scripts/deps.sh
target=${CARGO_TARGET_DIR:-$repo/target}
echo "bench: release build (cargo build --release --workspace)" >&2
cargo build --release --workspace --quiet
bin=$target/release/migcage
host_name=$(hostname -s 2>/dev/null || hostname)
out=${BENCH_OUT:-$repo/docs/performance.md}
mkdir -p "$(dirname "$out")"

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# Before anything is written: the results page itself is rewritten below.
commit="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$repo" diff --quiet HEAD 2>/dev/null || echo ' with uncommitted changes')"
work=$(mktemp -d /tmp/migcage-bench.XXXXXX)
cleanup() {
  # `runc run` removes its container; one left by an interrupted run is deleted here.
  cleanup_containers
  if mountpoint -q "$work/bundles"; then umount "$work/bundles" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
gcc -O2 -Wall -o "$work/hookwrap" benches/hookwrap.c
gcc -O2 -Wall -o "$work/lifecycle" benches/lifecycle.c
printf 'int main(void) { return 0; }\n' | gcc -O2 -static -x c -o "$work/true-static" -

# --- helpers (shared with scripts/profile-hook.sh) ------------------------------------------------
# shellcheck source=lib/bench-common.sh
. "$repo/scripts/lib/bench-common.sh"

rows=()
row() { rows+=("| $* |"); echo "  $*" >&2; }

# --- 1. the hook per container ---------------------------------------------------------------------

# hook_pair CONFIG MODE LABEL ENV...: one figure on a100-7x1g and on dgx-8x7, the two alternating
# container by container (so that a slow patch of the machine slows both), with CONFIG the config
# file's name in each simulated host; their pairwise ratio is the "within 10%" target.
hook_pair() {
  local cfg=$1 mode=$2 label=$3; shift 3
  local key=${mode}_${label//[^a-z0-9]/_} topo b rec
  for topo in a100-7x1g dgx-8x7; do
    b=$work/b-$topo-$key rec=$work/hook-$topo-$key.txt
    bundle "$b" "${roots[$topo]}/$cfg" "[\"$work/hookwrap\", \"hookwrap\", \"$rec\", \"$bin\", \"hook\", \"prestart\"]" "$@"
    run_container "$mode" "$b" >/dev/null   # warm-up (page cache, snapshot already there)
    : >"$rec"
  done
  for ((i = 0; i < runs; i++)); do
    for topo in a100-7x1g dgx-8x7; do run_container "$mode" "$work/b-$topo-$key" >/dev/null; done
  done
  for topo in a100-7x1g dgx-8x7; do
    rec=$work/hook-$topo-$key.txt
    if awk '$3 != 0 { bad = 1 } END { exit !bad }' "$rec"; then
      echo "bench: a hook failed under $topo $mode $label" >&2; exit 1
    fi
    read -r p50 p95 _ < <(stats "$rec" 1 1000000)
    read -r _ _ rss < <(stats "$rec" 2 1024)
    row "hook: $label | $topo | $mode | $p50 | $p95 | $rss | $(wc -l <"$rec")"
    eval "hook_p50_${topo//-/_}_${key}=$p50"
  done
  paste "$work/hook-dgx-8x7-$key.txt" "$work/hook-a100-7x1g-$key.txt" \
    | awk '{ printf "%.4f\n", $1 / $6 }' >"$work/topo-ratios.txt"
  read -r q25 q50 q75 < <(quartiles "$work/topo-ratios.txt")
  eval "topo_ratio_${key}='$q50 $q25 $q75'"
}

echo "bench: hook wall time ($runs containers per row; a100-7x1g and dgx-8x7 alternating)" >&2
declare -A roots
for topo in a100-7x1g dgx-8x7; do
  root=$(simulate "$topo")
  roots[$topo]=$root
  # Without a snapshot: a directory where the snapshot file would go, so that none can be read or
  # written and every start runs NVML.
  mkdir -p "$root/run-nosnap/inventory.json"
  sed "s|^state_dir = .*|state_dir = \"$root/run-nosnap\"|" "$root/config.toml" >"$root/config-nosnap.toml"
done
# Devices only: every container with a device also gets the driver files of
# NVIDIA_DRIVER_CAPABILITIES (utility,compute when unset), so "devices only" is a host whose
# driver_root holds no driver files (simulate writes that config): the same hook, nothing to
# mount.
hook_pair config-devices-only.toml v1 "devices" NVIDIA_VISIBLE_DEVICES=0:1
hook_pair config.toml v1 "utility,compute" NVIDIA_VISIBLE_DEVICES=0:1 NVIDIA_DRIVER_CAPABILITIES=utility,compute
hook_pair config-devices-only.toml v2 "devices" NVIDIA_VISIBLE_DEVICES=0:1
hook_pair config-nosnap.toml v1 "utility,compute, no snapshot" \
  NVIDIA_VISIBLE_DEVICES=0:1 NVIDIA_DRIVER_CAPABILITIES=utility,compute
hook_rows=("${rows[@]}"); rows=()

# --- 2. container start, one interleaved run: floor, static spec, hook, runtime mode --------------

# ratio_stats A B: "median p25 p75" of the pairwise ratios A[i] / B[i] (the same round of the
# interleaved run, so that a slow patch of the machine slows both sides of a ratio).
ratio_stats() {
  paste "$1" "$2" | awk '{ printf "%.4f\n", $1 / $2 }' >"$work/ratios.txt"
  read -r q25 q50 q75 < <(quartiles "$work/ratios.txt")
  echo "$q50 $q25 $q75"
}

# The bundles of the container starts live on a tmpfs, as every engine keeps its bundles under
# /run (containerd's and Docker's task directories, Podman's and CRI-O's runroot): writing and
# renaming config.json costs there what it costs on a host, not what a disk-backed /tmp costs.
mkdir -p "$work/bundles"
mount -t tmpfs -o mode=0755,size=256m tmpfs "$work/bundles"

start_run() { # MODE (v1|v2)
  local m=$1 root=${roots[a100-7x1g]} d=$work/bundles/start-$1
  local dev=$root/config-devices-only.toml full=$root/config.toml
  local hook="[\"$bin\", \"migcage\", \"hook\", \"prestart\"]"
  # floor: no device asked, no hook (a plain start); static-*: the nodes and rules (and, with
  # utility,compute, the driver files' bind mounts) the hook gives, written into config.json.
  bundle "$d/floor" "$dev" '[]'
  bundle "$d/hook-dev" "$dev" "$hook" NVIDIA_VISIBLE_DEVICES=0:1
  static_bundle "$d/hook-dev" "$d/static-dev" "$dev"
  # empty-hook: the static spec plus a prestart hook that does nothing at all (a static C
  # program that returns 0): what any hook costs a runc start on this machine, before its work.
  mkdir -p "$d/empty-hook"
  cp -a "$d/static-dev/rootfs" "$d/empty-hook/"
  jq --arg true "$work/true-static" '.hooks.prestart = [{path: $true, args: ["true"]}]' \
    "$d/static-dev/config.json" >"$d/empty-hook/config.json"
  bundle "$d/hook-uc" "$full" "$hook" NVIDIA_VISIBLE_DEVICES=0:1 NVIDIA_DRIVER_CAPABILITIES=utility,compute
  static_bundle "$d/hook-uc" "$d/static-uc" "$full" mounts
  bundle "$d/runtime-uc" "$full" '[]' NVIDIA_VISIBLE_DEVICES=0:1 NVIDIA_DRIVER_CAPABILITIES=utility,compute
  cp "$d/runtime-uc/config.json" "$d/runtime-pristine.json"
  local k
  for k in floor static-dev empty-hook hook-dev static-uc hook-uc; do
    run_container "$m" "$d/$k" >/dev/null; : >"$d/$k.txt"
  done
  MIGCAGE_CONFIG=$full run_container "$m" "$d/runtime-uc" "$bin" runtime >/dev/null; : >"$d/runtime-uc.txt"
  cp "$d/runtime-pristine.json" "$d/runtime-uc/config.json"
  run_lifecycle "$m" "$d/static-uc" runc >/dev/null; : >"$d/static-life.txt"
  MIGCAGE_CONFIG=$full run_lifecycle "$m" "$d/runtime-uc" "$bin" runtime >/dev/null; : >"$d/runtime-life.txt"
  cp "$d/runtime-pristine.json" "$d/runtime-uc/config.json"
  # Every other round runs them in reverse order, so that none is always first after the
  # round before or always next to the same neighbour.
  local order=(floor static-dev empty-hook hook-dev static-uc hook-uc runtime-uc static-life runtime-life)
  for ((i = 0; i < start_runs; i++)); do
    local ks=("${order[@]}")
    if ((i % 2)); then
      ks=(runtime-life static-life runtime-uc hook-uc static-uc hook-dev empty-hook static-dev floor)
    fi
    for k in "${ks[@]}"; do
      case $k in
        runtime-uc)
          MIGCAGE_CONFIG=$full run_container "$m" "$d/runtime-uc" "$bin" runtime >>"$d/runtime-uc.txt"
          cp "$d/runtime-pristine.json" "$d/runtime-uc/config.json" ;;  # a fresh bundle, as an engine makes one
        runtime-life)
          MIGCAGE_CONFIG=$full run_lifecycle "$m" "$d/runtime-uc" "$bin" runtime >>"$d/runtime-life.txt"
          cp "$d/runtime-pristine.json" "$d/runtime-uc/config.json" ;;
        static-life) run_lifecycle "$m" "$d/static-uc" runc >>"$d/static-life.txt" ;;
        *) run_container "$m" "$d/$k" >>"$d/$k.txt" ;;
      esac
    done
  done
  local label
  for k in floor static-dev empty-hook hook-dev static-uc hook-uc runtime-uc static-life runtime-life; do
    case $k in
      floor) label="runc run, no device, no hook (the floor)" ;;
      static-dev) label="runc run, devices written statically into config.json" ;;
      empty-hook) label="runc run, devices statically and a prestart hook that does nothing" ;;
      hook-dev) label="runc run, devices by the migcage hook" ;;
      static-uc) label="runc run, devices and utility,compute driver files written statically" ;;
      hook-uc) label="runc run, migcage hook (utility,compute)" ;;
      runtime-uc) label="runc run via migcage runtime (utility,compute)" ;;
      static-life) label="create, start, wait, delete (as engines do), static spec (utility,compute)" ;;
      runtime-life) label="create, start, wait, delete via migcage runtime (utility,compute)" ;;
    esac
    read -r p50 p95 _ < <(stats "$d/$k.txt" 1 1000)
    row "$label | a100-7x1g | $m | $p50 | $p95 | | $start_runs"
  done
  read -r hook_dev_ratio[$m] hook_dev_lo[$m] hook_dev_hi[$m] < <(ratio_stats "$d/hook-dev.txt" "$d/static-dev.txt")
  read -r hook_uc_ratio[$m] hook_uc_lo[$m] hook_uc_hi[$m] < <(ratio_stats "$d/hook-uc.txt" "$d/static-uc.txt")
  read -r rt_ratio[$m] rt_lo[$m] rt_hi[$m] < <(ratio_stats "$d/runtime-life.txt" "$d/static-life.txt")
  read -r rt_run_ratio[$m] rt_run_lo[$m] rt_run_hi[$m] < <(ratio_stats "$d/runtime-uc.txt" "$d/static-uc.txt")
  read -r static_ratio[$m] static_lo[$m] static_hi[$m] < <(ratio_stats "$d/static-dev.txt" "$d/floor.txt")
  read -r empty_ratio[$m] empty_lo[$m] empty_hi[$m] < <(ratio_stats "$d/empty-hook.txt" "$d/static-dev.txt")
}

declare -A hook_dev_ratio hook_dev_lo hook_dev_hi hook_uc_ratio hook_uc_lo hook_uc_hi
declare -A rt_ratio rt_lo rt_hi rt_run_ratio rt_run_lo rt_run_hi static_ratio static_lo static_hi empty_ratio empty_lo empty_hi
for m in v1 v2; do
  echo "bench: container start on cgroup $m, interleaved: floor, static, hook, runtime mode ($start_runs rounds)" >&2
  start_run "$m"
done
start_rows=("${rows[@]}"); rows=()

# --- 3. the runtime wrapper's pass-through commands -------------------------------------------------

# `state` of one created container, straight and through the wrapper, alternating: what the
# wrapper adds to every command it does not edit (start, state, kill, delete, exec).
echo "bench: runtime pass-through (runc state, direct and through migcage runtime; $runs each)" >&2
pass_id="mcbench-$$-pass"
pass_cfg=${roots[a100-7x1g]}/config.toml
bundle "$work/bundles/pass" "$pass_cfg" '[]'
runc create --bundle "$work/bundles/pass" "$pass_id" </dev/null >/dev/null 2>&1
: >"$work/pass-direct.txt"; : >"$work/pass-wrapped.txt"
for ((i = 0; i < runs; i++)); do
  t0=$(now_us); runc state "$pass_id" >/dev/null; t1=$(now_us)
  echo $((t1 - t0)) >>"$work/pass-direct.txt"
  t0=$(now_us); MIGCAGE_CONFIG=$pass_cfg "$bin" runtime state "$pass_id" >/dev/null; t1=$(now_us)
  echo $((t1 - t0)) >>"$work/pass-wrapped.txt"
done
runc delete -f "$pass_id" >/dev/null 2>&1
read -r p50 p95 _ < <(stats "$work/pass-direct.txt" 1 1000)
row "runc state | | v1 | $p50 | $p95 | | $runs"
read -r p50 p95 _ < <(stats "$work/pass-wrapped.txt" 1 1000)
row "runc state via migcage runtime (pass-through) | | v1 | $p50 | $p95 | | $runs"
paste "$work/pass-wrapped.txt" "$work/pass-direct.txt" | awk '{ print $1 - $2 }' >"$work/pass-added.txt"
read -r pass_lo pass_added pass_hi < <(quartiles "$work/pass-added.txt")
pass_rows=("${rows[@]}"); rows=()

# --- 4. list, refresh, cdi generate on dgx-8x7 ------------------------------------------------------

echo "bench: list / refresh / cdi generate on dgx-8x7" >&2
root=${roots[dgx-8x7]}
cli_figure() { # LABEL COMMAND...
  local label=$1; shift
  local rec=$work/cli-${label//[^a-z]/_}.txt t0 t1
  : >"$rec"
  MIGCAGE_CONFIG=$root/config.toml "$@" >/dev/null
  for ((i = 0; i < runs; i++)); do
    t0=$(now_us); MIGCAGE_CONFIG=$root/config.toml "$@" >/dev/null; t1=$(now_us)
    echo $((t1 - t0)) >>"$rec"
  done
  read -r p50 p95 _ < <(stats "$rec" 1 1000)
  row "$label | dgx-8x7 | | $p50 | $p95 | | $runs"
}
cli_figure "migcage list" "$bin" list
cli_figure "migcage refresh" "$bin" refresh
cdi_note=""
if "$bin" cdi generate --help >/dev/null 2>&1; then
  cli_figure "migcage cdi generate" "$bin" cdi generate --output "$work/cdi.yaml"
else
  cdi_note="migcage cdi generate is not in this build: no figure."
fi
cli_rows=("${rows[@]}"); rows=()

# --- 5. mig apply of a full layout on dgx-8x-empty ---------------------------------------------------

echo "bench: mig apply on dgx-8x-empty" >&2
mig_root=$(simulate dgx-8x-empty)
cat >"$work/mig-parted.yaml" <<'EOF'
version: v1
mig-configs:
  all-1g.5gb:
    - devices: all
      mig-enabled: true
      mig-devices: { "1g.5gb": 7 }
  empty:
    - devices: all
      mig-enabled: true
EOF
mig_runs=$((runs < 10 ? runs : 10))
rec=$work/mig-apply.txt
: >"$rec"
for ((i = 0; i < mig_runs; i++)); do
  t0=$(now_us)
  MIGCAGE_CONFIG=$mig_root/config.toml "$bin" mig apply -f "$work/mig-parted.yaml" -c all-1g.5gb >/dev/null
  t1=$(now_us)
  echo $((t1 - t0)) >>"$rec"
  MIGCAGE_CONFIG=$mig_root/config.toml "$bin" mig apply -f "$work/mig-parted.yaml" -c empty >/dev/null
done
read -r p50 p95 _ < <(stats "$rec" 1 1000)
row "migcage mig apply, empty to 8 x 7 1g.5gb | dgx-8x-empty | | $p50 | $p95 | | $mig_runs"
mig_rows=("${rows[@]}"); rows=()

# --- 6. a container start that makes its instance on demand, against one that finds one free ------

echo "bench: profile:1g.5gb, instance made on demand vs a free one (alternating, $runs each)" >&2
demand_root=$(simulate a100-empty)
free_root=${roots[a100-7x1g]}
# Devices only, as in 2; on a100-empty each start makes its 1g.5gb and its poststop destroys it
# again (destroy_on_release), so that every run makes one; on a100-7x1g the same request leases
# one of the seven that exist and the poststop releases it.
for r in "$demand_root" "$free_root"; do
  cp "$r/config-devices-only.toml" "$r/config-profile.toml"
done
"$bin" config set --config "$demand_root/config-profile.toml" allocation.create_on_demand true >/dev/null
"$bin" config set --config "$demand_root/config-profile.toml" allocation.destroy_on_release true >/dev/null
with_poststop() { # BUNDLE CONFIG
  jq --arg bin "$bin" --arg cfg "MIGCAGE_CONFIG=$2" \
    '.hooks.poststop = [{path: $bin, args: ["migcage", "hook", "poststop"], env: [$cfg]}]' \
    "$1/config.json" >"$1/config.json.new"
  mv "$1/config.json.new" "$1/config.json"
}
for side in demand free; do
  r=$demand_root; [[ $side == free ]] && r=$free_root
  bundle "$work/start-$side" "$r/config-profile.toml" "[\"$bin\", \"migcage\", \"hook\", \"prestart\"]" \
    NVIDIA_VISIBLE_DEVICES=profile:1g.5gb
  with_poststop "$work/start-$side" "$r/config-profile.toml"
  run_container v1 "$work/start-$side" >/dev/null
  : >"$work/start-$side.txt"
done
for ((i = 0; i < runs; i++)); do
  run_container v1 "$work/start-demand" >>"$work/start-demand.txt"
  run_container v1 "$work/start-free" >>"$work/start-free.txt"
done
left=$(MIGCAGE_CONFIG=$demand_root/config-profile.toml "$bin" list --json | jq '[.gpus[].mig_devices[]] | length')
[[ $left == 0 ]] || { echo "bench: $left instances made on demand were left on a100-empty" >&2; exit 1; }
read -r o50 o95 _ < <(stats "$work/start-demand.txt" 1 1000)
read -r f50 f95 _ < <(stats "$work/start-free.txt" 1 1000)
row "runc run, profile:1g.5gb, instance made on demand (destroyed at poststop) | a100-empty | v1 | $o50 | $o95 | | $runs"
row "runc run, profile:1g.5gb, a free instance leased (released at poststop) | a100-7x1g | v1 | $f50 | $f95 | | $runs"
demand_rows=("${rows[@]}"); rows=()

# --- report -------------------------------------------------------------------------------------------

a=$hook_p50_a100_7x1g_v1_devices d=$hook_p50_dgx_8x7_v1_devices
a2=$hook_p50_a100_7x1g_v2_devices d2=$hook_p50_dgx_8x7_v2_devices
u=$hook_p50_a100_7x1g_v1_utility_compute ud=$hook_p50_dgx_8x7_v1_utility_compute
ns=$hook_p50_a100_7x1g_v1_utility_compute__no_snapshot nsd=$hook_p50_dgx_8x7_v1_utility_compute__no_snapshot
read -r td td_lo td_hi <<<"$topo_ratio_v1_devices"
read -r tu tu_lo tu_hi <<<"$topo_ratio_v1_utility_compute"
# The largest of the figures #18 sets a limit on (the no-snapshot runs are a comparison only).
rss_max=$(cat "$work"/hook-*-v?_devices.txt "$work"/hook-*-v1_utility_compute.txt \
  | awk '$2 > m { m = $2 } END { printf "%.2f", m / 1024 }')
cdi_p50=$(stats "$work/cli-migcage_cdi_generate.txt" 1 1000 | cut -d' ' -f1)
verdict() { awk -v v="$1" -v lim="$2" 'BEGIN { print (v <= lim) ? "MET" : "NOT MET" }'; }
within() { awk -v a="$1" -v b="$2" 'BEGIN { r = (a > b) ? a / b : b / a; printf "%.3f", r }'; }
{
  echo "# migcage benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Written by \`scripts/bench.sh\` (run it as root to reproduce every figure here; nothing on this"
  echo "page is edited by hand). Commit $commit."
  echo
  echo "Machine: $host_name, $(nproc) CPUs ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1)),"
  echo "kernel $(uname -r), $(runc --version | head -n1), "
  echo "release build; $runs containers per figure (after one warm-up), $start_runs rounds of the interleaved"
  echo "container starts. Times in ms, RSS in MiB."
  echo "Load average before: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the"
  echo "machine shows in the p95 column first)."
  echo
  echo "| What | Topology | cgroup | p50 ms | p95 ms | peak RSS MiB | n |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${hook_rows[@]}" "${start_rows[@]}" "${pass_rows[@]}" "${cli_rows[@]}" "${mig_rows[@]}" "${demand_rows[@]}"
  echo
  echo "Targets (issue #18), each MET or NOT MET at this commit; a ratio is the median of the"
  echo "pairwise ratios of one interleaved run, with its spread (p25-p75):"
  echo
  for m in v1 v2; do
    echo "- hook / static spec, devices only, cgroup $m: **${hook_dev_ratio[$m]}** (${hook_dev_lo[$m]}-${hook_dev_hi[$m]}; target <= 1.08: $(verdict "${hook_dev_ratio[$m]}" 1.08))"
    echo "- hook / static spec, utility,compute, cgroup $m: **${hook_uc_ratio[$m]}** (${hook_uc_lo[$m]}-${hook_uc_hi[$m]}; target <= 1.08: $(verdict "${hook_uc_ratio[$m]}" 1.08))"
    echo "- runtime mode / static spec, utility,compute, cgroup $m, create to delete as engines drive it: **${rt_ratio[$m]}** (${rt_lo[$m]}-${rt_hi[$m]}; target <= 1.10: $(verdict "${rt_ratio[$m]}" 1.10))"
  done
  echo "- hook process p50, devices only: a100-7x1g $a ms, dgx-8x7 $d ms (target < 2.5 ms: $(verdict "$a" 2.499), $(verdict "$d" 2.499)); on v2 $a2 and $d2 ms"
  echo "- hook process p50, utility,compute: a100-7x1g $u ms, dgx-8x7 $ud ms (target < 4 ms: $(verdict "$u" 3.999), $(verdict "$ud" 3.999))"
  echo "- dgx-8x7 against a100-7x1g, pairwise (alternating runs): $td devices only ($td_lo-$td_hi), $tu utility,compute ($tu_lo-$tu_hi) (target within 1.10 either way: $(verdict "$(within "$td" 1)" 1.10), $(verdict "$(within "$tu" 1)" 1.10))"
  echo "- hook peak RSS, largest of those runs: $rss_max MiB (target < 8 MiB: $(verdict "$rss_max" 7.999))"
  echo "- migcage cdi generate on dgx-8x7: $cdi_p50 ms (target < 10 ms: $(verdict "$cdi_p50" 9.999))"
  echo
  echo "Also measured:"
  echo
  for m in v1 v2; do
    echo "- the static spec over the floor (a start with no device), cgroup $m: ${static_ratio[$m]} (${static_lo[$m]}-${static_hi[$m]})"
    echo "- a prestart hook that does nothing (a static C program) over the static spec, cgroup $m: ${empty_ratio[$m]} (${empty_lo[$m]}-${empty_hi[$m]}): what runc's running of any hook costs, before the hook's own work"
    echo "- runtime mode by \`migcage runtime run\` (its createRuntime and poststop hooks) over \`runc run\` of the static spec, cgroup $m: ${rt_run_ratio[$m]} (${rt_run_lo[$m]}-${rt_run_hi[$m]})"
  done
  echo "- what the runtime wrapper adds to a pass-through command (\`state\`), pairwise: $(awk -v v="$pass_added" 'BEGIN { printf "%.2f", v / 1000 }') ms ($(awk -v v="$pass_lo" 'BEGIN { printf "%.2f", v / 1000 }')-$(awk -v v="$pass_hi" 'BEGIN { printf "%.2f", v / 1000 }'))"
  echo "- without the snapshot (NVML at every start): $ns ms on a100-7x1g, $nsd ms on dgx-8x7 (simulated NVML; a real one adds its own start-up)"
  echo "- container start making its instance on demand / finding a free one (p50, each with its poststop): $(awk -v a="$o50" -v b="$f50" 'BEGIN { printf "%.3f", a / b }')"
  for n in "$cdi_note"; do [[ -z $n ]] || echo "- $n"; done
  echo
  echo "Hook times are measured around the hook process (benches/hookwrap.c); container starts"
  echo "around \`runc run\` of a busybox \`true\`, or around its create, start, wait and delete"
  echo "(benches/lifecycle.c). \"no snapshot\" puts a directory where the snapshot"
  echo "file would go, so every start initializes the (simulated) NVML: the cost the snapshot removes."
  echo "Each simulated host's state_dir is on a tmpfs, as /run/migcage is on a real host."
  echo "\`scripts/profile-hook.sh\` breaks the hook's time down by stage."
} >"$out"
echo >&2
cat "$out"
echo >&2
echo "bench: written to $out" >&2
