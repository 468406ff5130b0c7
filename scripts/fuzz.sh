#!/usr/bin/env bash
# Run every cargo-fuzz target in fuzz/ for a bounded time and print, per target, how many inputs
# it ran and the coverage it reached. A crash (panic, failed property, sanitizer report, timeout)
# fails the script and names the input that caused it.
#
#   MIGCAGE_FUZZ_SECONDS   seconds per target (default 20, as in CI; 0 = build only)
#   MIGCAGE_FUZZ_TARGETS   space-separated subset of targets (default: all of `cargo fuzz list`)
#
# cargo-fuzz needs nightly compiler flags (-Zsanitizer, sancov passes); only the stable toolchain
# exists here, so RUSTC_BOOTSTRAP=1 unlocks them on it. The corpus grows under the target
# directory (fuzz/seeds holds the committed starting inputs); crashes land in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${MIGCAGE_FUZZ_SECONDS:-20}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  t0=$(date +%s)
  cargo install cargo-fuzz --locked --quiet
  echo "fuzz: cargo-fuzz installed in $(($(date +%s) - t0)) s"
fi

target_dir=${CARGO_TARGET_DIR:-$root/target}/fuzz
triple=$(rustc -vV | sed -n 's/^host: //p')
bin=$target_dir/$triple/release
work=$target_dir/work

t0=$(date +%s)
mkdir -p "$work"
if ! (cd fuzz && cargo fuzz build --target-dir "$target_dir") >"$work/build.log" 2>&1; then
  echo "fuzz: building the targets failed; the end of $work/build.log:" >&2
  grep -v '^ *Compiling ' "$work/build.log" | tail -n 40 >&2
  exit 1
fi
echo "fuzz: targets built in $(($(date +%s) - t0)) s"
[ "$secs" -gt 0 ] || exit 0

if [ -n "${MIGCAGE_FUZZ_TARGETS:-}" ]; then
  read -r -a targets <<<"$MIGCAGE_FUZZ_TARGETS"
else
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

failed=()
for t in "${targets[@]}"; do
  if [ ! -x "$bin/$t" ]; then
    echo "fuzz: $t: no such target (cargo fuzz list names them)" >&2
    failed+=("$t")
    continue
  fi
  corpus=$work/corpus/$t
  artifacts=$root/fuzz/artifacts/$t
  log=$work/$t.log
  mkdir -p "$corpus" "$artifacts"
  args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
    -artifact_prefix="$artifacts/")
  case $t in
    request_spec | request_sources | selector) args+=(-dict="$root/fuzz/dicts/request.dict") ;;
    procfs) args+=(-dict="$root/fuzz/dicts/procfs.dict") ;;
    cgroup_rules) args+=(-dict="$root/fuzz/dicts/cgroup_rules.dict") ;;
  esac
  seeds=()
  [ -d "$root/fuzz/seeds/$t" ] && seeds=("$root/fuzz/seeds/$t")
  # cargo-fuzz runs its targets with detect_odr_violation=0; so do these direct runs.
  if ASAN_OPTIONS=detect_odr_violation=0 "$bin/$t" "${args[@]}" "$corpus" "${seeds[@]}" >"$log" 2>&1; then
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(sed -nE 's/.* cov: ([0-9]+) .*/\1/p' <<<"$done_line")
    ft=$(sed -nE 's/.* ft: ([0-9]+) .*/\1/p' <<<"$done_line")
    corp=$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<<"$done_line")
    printf 'fuzz: %-16s ok: %s execs in %s s (%s exec/s), cov %s, ft %s, corpus %s\n' \
      "$t" "$execs" "$secs" "$rate" "$cov" "$ft" "$corp"
  else
    crash=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log" | tail -1)
    echo "fuzz: $t FAILED; the end of its log ($log):" >&2
    tail -n 40 "$log" >&2
    if [ -n "$crash" ]; then
      echo "fuzz: $t: reproduce with: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $t $crash)" >&2
      echo "fuzz: $t: then make the input a unit test next to the parser, and fix it" >&2
    fi
    failed+=("$t")
  fi
done
if ((${#failed[@]})); then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
