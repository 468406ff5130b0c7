#!/usr/bin/env bash
# Whole-process benchmarks of migcage on simulated MIG hosts, with real runc containers. Run as
# root on Debian:
#
#   scripts/bench.sh                  # BENCH_RUNS=40 containers per figure by default
#
# It prints a Markdown table and writes it to docs/performance.md, the committed results page
# that the README quotes (BENCH_OUT writes elsewhere, for a run that is not to be committed). Release build. What it measures:
#   - the hook's wall time per container (p50, p95), measured around the hook process by
#     benches/hookwrap.c (fork, exec, dynamic loading and all), on a100-7x1g and dgx-8x7: devices
#     only (a driver_root without driver files: nothing to mount), with the driver files of
#     NVIDIA_DRIVER_CAPABILITIES=utility,compute (also what an unset variable means), on cgroup v1
#     and v2, and without the inventory snapshot (NVML at every start), for comparison;
#   - the hook's peak RSS (wait4's ru_maxrss: the hook or its setns child, whichever is larger);
#   - container start: `runc run` of one busybox container with the hook against the same
#     container with the same device nodes written statically into config.json (linux.devices +
#     linux.resources.devices), alternating the two, as a ratio of medians;
#   - the runtime wrapper (`migcage runtime run`) against the hook on the same container;
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
work=$(mktemp -d /tmp/migcage-bench.XXXXXX)
cleanup() {
  # `runc run` removes its container; one left by an interrupted run is deleted here.
  cleanup_containers
  rm -rf "$work"
}
trap cleanup EXIT
gcc -O2 -Wall -o "$work/hookwrap" benches/hookwrap.c

# --- helpers (shared with scripts/profile-hook.sh) ------------------------------------------------
# shellcheck source=lib/bench-common.sh
. "$repo/scripts/lib/bench-common.sh"

rows=()
row() { rows+=("| $* |"); echo "  $*" >&2; }

# --- 1. the hook per container ---------------------------------------------------------------------

hook_figure() { # TOPOLOGY ROOT CONFIG MODE LABEL ENV...
  local topo=$1 root=$2 config=$3 mode=$4 label=$5; shift 5
  local b=$work/b-$topo-$mode-${label//[^a-z0-9]/_} rec=$work/hook-$topo-$mode-${label//[^a-z0-9]/_}.txt
  bundle "$b" "$config" "[\"$work/hookwrap\", \"hookwrap\", \"$rec\", \"$bin\", \"hook\", \"prestart\"]" "$@"
  run_container "$mode" "$b" >/dev/null   # warm-up (page cache, snapshot already there)
  : >"$rec"
  for ((i = 0; i < runs; i++)); do run_container "$mode" "$b" >/dev/null; done
  if awk '$3 != 0 { bad = 1 } END { exit !bad }' "$rec"; then
    echo "bench: a hook failed under $topo $mode $label" >&2; exit 1
  fi
  read -r p50 p95 _ < <(stats "$rec" 1 1000000)
  read -r _ _ rss < <(stats "$rec" 2 1024)
  row "hook: $label | $topo | $mode | $p50 | $p95 | $rss | $(wc -l <"$rec")"
  eval "hook_p50_${topo//-/_}_${mode}_${label//[^a-z0-9]/_}=$p50"
}

echo "bench: hook wall time ($runs containers per row)" >&2
declare -A roots
for topo in a100-7x1g dgx-8x7; do
  roots[$topo]=$(simulate "$topo")
done
for topo in a100-7x1g dgx-8x7; do
  root=${roots[$topo]}
  # Devices only: every container with a device also gets the driver files of
  # NVIDIA_DRIVER_CAPABILITIES (utility,compute when unset), so "devices only" is a host whose
  # driver_root holds no driver files (simulate writes that config): the same hook, nothing to
  # mount.
  devonly=$root/config-devices-only.toml
  hook_figure "$topo" "$root" "$devonly" v1 "devices" NVIDIA_VISIBLE_DEVICES=0:1
  hook_figure "$topo" "$root" "$root/config.toml" v1 "utility,compute" \
    NVIDIA_VISIBLE_DEVICES=0:1 NVIDIA_DRIVER_CAPABILITIES=utility,compute
  hook_figure "$topo" "$root" "$devonly" v2 "devices" NVIDIA_VISIBLE_DEVICES=0:1
  # Without a snapshot: a directory where the snapshot file would go, so that none can be read or
  # written and every start runs NVML.
  nosnap=$root/config-nosnap.toml
  mkdir -p "$root/run-nosnap/inventory.json"
  sed "s|^state_dir = .*|state_dir = \"$root/run-nosnap\"|" "$root/config.toml" >"$nosnap"
  hook_figure "$topo" "$root" "$nosnap" v1 "utility,compute, no snapshot" \
    NVIDIA_VISIBLE_DEVICES=0:1 NVIDIA_DRIVER_CAPABILITIES=utility,compute
done
hook_rows=("${rows[@]}"); rows=()

# --- 2. container start: hook against the same nodes written statically ----------------------------

echo "bench: container start, hook vs static spec (alternating, $runs each)" >&2
root=${roots[a100-7x1g]}
cfg=$root/config-devices-only.toml
bundle "$work/start-hook" "$cfg" "[\"$bin\", \"migcage\", \"hook\", \"prestart\"]" NVIDIA_VISIBLE_DEVICES=0:1
static_bundle "$work/start-hook" "$work/start-static" "$cfg"
run_container v1 "$work/start-hook" >/dev/null; run_container v1 "$work/start-static" >/dev/null
: >"$work/start-hook.txt"; : >"$work/start-static.txt"
for ((i = 0; i < runs; i++)); do
  run_container v1 "$work/start-hook" >>"$work/start-hook.txt"
  run_container v1 "$work/start-static" >>"$work/start-static.txt"
done
read -r h50 h95 _ < <(stats "$work/start-hook.txt" 1 1000)
read -r s50 s95 _ < <(stats "$work/start-static.txt" 1 1000)
ratio=$(awk -v a="$h50" -v b="$s50" 'BEGIN { printf "%.3f", a / b }')
row "runc run, devices written statically into config.json | a100-7x1g | v1 | $s50 | $s95 | | $runs"
row "runc run, devices by the migcage hook | a100-7x1g | v1 | $h50 | $h95 | | $runs"
start_rows=("${rows[@]}"); rows=()

# --- 3. runtime wrapper against the hook ------------------------------------------------------------

runtime_note=""
if "$bin" runtime --version >/dev/null 2>&1 || "$bin" help runtime >/dev/null 2>&1; then
  echo "bench: runtime mode vs hook mode (alternating, $runs each)" >&2
  cfg=$root/config.toml
  bundle "$work/rt" "$cfg" '[]' NVIDIA_VISIBLE_DEVICES=0:1
  bundle "$work/rt-hook" "$cfg" "[\"$bin\", \"migcage\", \"hook\", \"prestart\"]" NVIDIA_VISIBLE_DEVICES=0:1
  cp "$work/rt/config.json" "$work/rt-pristine.json"
  export MIGCAGE_CONFIG=$cfg
  : >"$work/rt.txt"; : >"$work/rt-hook.txt"
  cp "$work/rt-pristine.json" "$work/rt/config.json"; run_container v1 "$work/rt" "$bin" runtime >/dev/null
  for ((i = 0; i < runs; i++)); do
    cp "$work/rt-pristine.json" "$work/rt/config.json"   # a fresh bundle, as an engine makes one
    run_container v1 "$work/rt" "$bin" runtime >>"$work/rt.txt"
    run_container v1 "$work/rt-hook" >>"$work/rt-hook.txt"
  done
  unset MIGCAGE_CONFIG
  read -r r50 r95 _ < <(stats "$work/rt.txt" 1 1000)
  read -r k50 k95 _ < <(stats "$work/rt-hook.txt" 1 1000)
  row "runc run via migcage runtime (utility,compute) | a100-7x1g | v1 | $r50 | $r95 | | $runs"
  row "runc run, migcage hook (utility,compute) | a100-7x1g | v1 | $k50 | $k95 | | $runs"
else
  runtime_note="migcage runtime is not in this build: no runtime-mode figure."
  r50=- k50=-
fi
runtime_rows=("${rows[@]}"); rows=()

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
scale=$(awk -v a="$a" -v d="$d" 'BEGIN { printf "%.3f", d / a }')
a2=$hook_p50_a100_7x1g_v2_devices d2=$hook_p50_dgx_8x7_v2_devices
scale2=$(awk -v a="$a2" -v d="$d2" 'BEGIN { printf "%.3f", d / a }')
u=$hook_p50_a100_7x1g_v1_utility_compute ud=$hook_p50_dgx_8x7_v1_utility_compute
uscale=$(awk -v a="$u" -v d="$ud" 'BEGIN { printf "%.3f", d / a }')
ns=$hook_p50_a100_7x1g_v1_utility_compute__no_snapshot nsd=$hook_p50_dgx_8x7_v1_utility_compute__no_snapshot
rss_max=$(cat "$work"/hook-*.txt | awk '$2 > m { m = $2 } END { printf "%.2f", m / 1024 }')
verdict() { awk -v v="$1" -v lim="$2" 'BEGIN { print (v <= lim) ? "met" : "NOT met" }'; }
{
  echo "# migcage benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Written by \`scripts/bench.sh\` (run it as root to reproduce every figure here; nothing on this"
  echo "page is edited by hand). Commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$repo" diff --quiet HEAD 2>/dev/null || echo ' with uncommitted changes')."
  echo
  echo "Machine: $host_name, $(nproc) CPUs ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1)),"
  echo "kernel $(uname -r), $(runc --version | head -n1), "
  echo "release build; $runs containers per figure (after one warm-up). Times in ms, RSS in MiB."
  echo "Load average before: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the"
  echo "machine shows in the p95 column first)."
  echo
  echo "| What | Topology | cgroup | p50 ms | p95 ms | peak RSS MiB | n |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${hook_rows[@]}" "${start_rows[@]}" "${runtime_rows[@]}" "${cli_rows[@]}" "${mig_rows[@]}" "${demand_rows[@]}"
  echo
  echo "Derived:"
  echo
  echo "- container start with the hook / static spec (p50): **$ratio** (target <= 1.15: $(verdict "$ratio" 1.15))"
  echo "- hook p50, dgx-8x7 / a100-7x1g, devices only: **$scale** on v1, **$scale2** on v2 (target <= 1.20: $(verdict "$scale" 1.20), $(verdict "$scale2" 1.20)); with utility,compute: **$uscale** ($(verdict "$uscale" 1.20))"
  echo "- devices-only hook p50 on a100-7x1g: $a ms (target < 5 ms: $(verdict "$a" 4.999)); dgx-8x7: $d ms"
  echo "- utility,compute hook p50 on a100-7x1g: $u ms (target < 25 ms: $(verdict "$u" 24.999)); dgx-8x7: $ud ms"
  echo "- without the snapshot (NVML at every start): $ns ms on a100-7x1g, $nsd ms on dgx-8x7 (simulated NVML; a real one adds its own start-up)"
  echo "- peak RSS of the hook, largest of all runs: $rss_max MiB (target < 16 MiB: $(verdict "$rss_max" 15.999))"
  if [[ $r50 != - ]]; then
    echo "- container start via the runtime wrapper / via the hook (p50): $(awk -v a="$r50" -v b="$k50" 'BEGIN { printf "%.3f", a / b }')"
  fi
  echo "- container start making its instance on demand / finding a free one (p50, each with its poststop): $(awk -v a="$o50" -v b="$f50" 'BEGIN { printf "%.3f", a / b }')"
  for n in "$runtime_note" "$cdi_note"; do [[ -z $n ]] || echo "- $n"; done
  echo
  echo "Hook times are measured around the hook process (benches/hookwrap.c); container starts"
  echo "around \`runc run\` of a busybox \`true\`. \"no snapshot\" puts a directory where the snapshot"
  echo "file would go, so every start initializes the (simulated) NVML: the cost the snapshot removes."
} >"$out"
echo >&2
cat "$out"
echo >&2
echo "bench: written to $out" >&2
