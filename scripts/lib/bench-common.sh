# Helpers shared by scripts/bench.sh and scripts/profile-hook.sh (sourced, not run). They expect
# $bin (the migcage binary) and $work (a scratch directory) to be set.

# now_us: monotonic enough for intervals of milliseconds (bash's EPOCHREALTIME, in µs).
now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }

# stats FILE COLUMN SCALE: "p50 p95 max" of a column of numbers, divided by SCALE, 2 decimals.
stats() {
  sort -n -k"$2","$2" "$1" | awk -v c="$2" -v s="$3" '
    { v[NR] = $c }
    END {
      if (NR == 0) { print "- - -"; exit }
      i50 = int(NR * 0.50 + 0.999999); i95 = int(NR * 0.95 + 0.999999)
      printf "%.2f %.2f %.2f\n", v[i50] / s, v[i95] / s, v[NR] / s
    }'
}

# quartiles FILE: "p25 p50 p75" of the numbers in FILE (one a line), 3 decimals.
quartiles() {
  sort -g "$1" | awk '
    { v[NR] = $1 }
    END {
      if (NR == 0) { print "- - -"; exit }
      i25 = int(NR * 0.25 + 0.999999); i50 = int(NR * 0.50 + 0.999999); i75 = int(NR * 0.75 + 0.999999)
      printf "%.3f %.3f %.3f\n", v[i25], v[i50], v[i75]
    }'
}

# simulate NAME: a simulated host under $work/NAME with a fresh inventory snapshot, and beside
# its config.toml a config-devices-only.toml whose driver_root holds no driver files (the same
# hook with nothing to mount: "devices only").
simulate() {
  local root=$work/$1
  "$bin" simulate --topology "$1" --root "$root" >/dev/null
  # state_dir on a tmpfs, as /run/migcage is on a real host (systemd mounts /run as one): the
  # lease file is replaced by rename on every start, which ext4 (auto_da_alloc) makes flush
  # the new file's data first, a cost no real host pays.
  if ! mountpoint -q "$work/run"; then
    mkdir -p "$work/run" && mount -t tmpfs -o mode=0755,size=64m tmpfs "$work/run"
  fi
  sed -i "s|^state_dir = .*|state_dir = \"$work/run/$1\"|" "$root/config.toml"
  MIGCAGE_CONFIG=$root/config.toml "$bin" refresh >/dev/null
  mkdir -p "$work/no-driver-files"
  sed "s|^driver_root = .*|driver_root = \"$work/no-driver-files\"|" "$root/config.toml" \
    >"$root/config-devices-only.toml"
  echo "$root"
}

# bundle DIR CONFIG HOOK-ARGS-JSON ENV...: a busybox bundle running `true`; HOOK-ARGS-JSON is the
# prestart hook's [path, args] as a JSON array (empty array: no hook). BUNDLE_HOOK_ENV (a JSON
# array of strings) adds to the hook's environment.
bundle() {
  local dir=$1 config=$2 hook=$3; shift 3
  mkdir -p "$dir/rootfs/bin" "$dir/rootfs/dev" "$dir/rootfs/proc" "$dir/rootfs/sys"
  cp "$(command -v busybox)" "$dir/rootfs/bin/busybox"
  ln -sf busybox "$dir/rootfs/bin/true"; ln -sf busybox "$dir/rootfs/bin/sh"
  local env; env=$(printf '%s\n' "PATH=/bin" "$@" | jq -R . | jq -s .)
  jq -n --argjson env "$env" --argjson hook "$hook" --arg cfg "MIGCAGE_CONFIG=$config" \
    --argjson hookenv "${BUNDLE_HOOK_ENV:-[]}" '{
    ociVersion: "1.0.2",
    process: {terminal: false, user: {uid: 0, gid: 0}, cwd: "/", args: ["true"], env: $env,
      rlimits: [{type: "RLIMIT_NOFILE", hard: 1024, soft: 1024}], noNewPrivileges: true},
    root: {path: "rootfs", readonly: true},
    hostname: "bench",
    mounts: [
      {destination: "/proc", type: "proc", source: "proc"},
      {destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"]},
      {destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"]}
    ],
    linux: {
      resources: {devices: [{allow: false, access: "rwm"}]},
      namespaces: [{type: "pid"}, {type: "ipc"}, {type: "uts"}, {type: "mount"}, {type: "network"}],
      maskedPaths: ["/proc/kcore", "/proc/keys"],
      readonlyPaths: ["/proc/sys", "/proc/sysrq-trigger"]
    }
  } + (if ($hook | length) > 0 then
        {hooks: {prestart: [{path: $hook[0], args: $hook[1:], env: ([$cfg] + $hookenv)}]}} else {} end)' \
    >"$dir/config.json"
}

# static_bundle HOOK-BUNDLE STATIC-BUNDLE CONFIG [mounts]: make STATIC-BUNDLE the container of
# HOOK-BUNDLE with the device nodes and rules the hook would give it written into config.json
# (the floor); with `mounts`, the driver files' bind mounts too.
static_bundle() {
  local from=$1 to=$2 config=$3 with_mounts=${4:-}
  local env; env=$(jq -r '.process.env[] | select(. != "PATH=/bin")' "$from/config.json")
  # shellcheck disable=SC2086
  bundle "$to" "$config" '[]' $env
  MIGCAGE_CONFIG=$config "$bin" explain --bundle "$from" --json >"$to/explain.json"
  # explain's device nodes are migcage's node objects (docs/json.md: path, major, minor, mode
  # as an octal string); every NVIDIA node is a character device.
  jq --slurpfile e "$to/explain.json" --arg mounts "$with_mounts" '
    def octal: explode | map(. - 48) | reduce .[] as $d (0; . * 8 + $d);
    $e[0].plan.edits.deviceNodes as $n
    | .linux.devices = [$n[] | {path, type: "c", major, minor}
        + (if .mode then {fileMode: (.mode | octal)} else {} end)]
    | .linux.resources.devices += [$n[] | {allow: true, type: "c", major, minor, access: "rwm"}]
    | if $mounts == "mounts" then .mounts += [$e[0].plan.edits.mounts[]
        | {destination: .containerPath, source: .hostPath, type: "bind", options}] else . end' \
    "$to/config.json" >"$to/static.json"
  mv "$to/static.json" "$to/config.json"
  [[ $(jq '.linux.devices | length' "$to/config.json") -gt 0 ]] \
    || { echo "bench: explain gave no device nodes" >&2; exit 1; }
}

# run_container MODE BUNDLE [LAUNCHER...]: one container; prints its wall time in µs. MODE v1 runs
# on this host's hierarchy, v2 in a private mount namespace with cgroup2 on /sys/fs/cgroup.
seq_id=0
run_container() {
  local mode=$1 b=$2; shift 2
  local launcher=("$@"); ((${#launcher[@]})) || launcher=(runc)
  seq_id=$((seq_id + 1))
  local id="mcbench-$$-$seq_id" t0 t1 rc=0
  t0=$(now_us)
  if [[ $mode == v2 ]]; then
    unshare -m --propagation private sh -c \
      'mount -t cgroup2 none /sys/fs/cgroup && exec "$@"' sh "${launcher[@]}" run --bundle "$b" "$id" \
      </dev/null >"$work/last.out" 2>&1 || rc=$?
  else
    "${launcher[@]}" run --bundle "$b" "$id" </dev/null >"$work/last.out" 2>&1 || rc=$?
  fi
  t1=$(now_us)
  if ((rc != 0)); then
    echo "bench: container $id ($b) failed (exit $rc):" >&2
    cat "$work/last.out" >&2
    exit 1
  fi
  echo $((t1 - t0))
}

# run_lifecycle MODE BUNDLE RUNTIME...: one container as an engine drives it (benches/lifecycle.c,
# built at $work/lifecycle: create, start, wait for its process, delete); prints its wall time
# in µs. MODE as for run_container.
run_lifecycle() {
  local mode=$1 b=$2; shift 2
  seq_id=$((seq_id + 1))
  local id="mcbench-$$-$seq_id" out rc=0
  if [[ $mode == v2 ]]; then
    out=$(unshare -m --propagation private sh -c \
      'mount -t cgroup2 none /sys/fs/cgroup && exec "$@"' sh "$work/lifecycle" "$b" "$id" "$@" \
      </dev/null 2>"$work/last.out") || rc=$?
  else
    out=$("$work/lifecycle" "$b" "$id" "$@" </dev/null 2>"$work/last.out") || rc=$?
  fi
  if ((rc != 0)); then
    echo "bench: container $id ($b) failed (exit $rc):" >&2
    cat "$work/last.out" >&2
    exit 1
  fi
  echo "${out%% *}"
}

# cleanup_containers: delete what an interrupted run left (`runc run` removes its container),
# and unmount the state tmpfs.
cleanup_containers() {
  if [[ -n ${work:-} ]] && mountpoint -q "$work/run"; then umount "$work/run" || true; fi
  local id
  for id in $(runc list -q 2>/dev/null | grep "^mcbench-$$-" || true); do
    runc delete -f "$id" >/dev/null 2>&1 || true
  done
}
