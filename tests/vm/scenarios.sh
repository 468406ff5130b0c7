#!/usr/bin/env bash
# Runs inside the test VM (scripts/vm/run.sh), as root, with systemd as PID 1 on pure cgroup v2.
# The share (the current directory) holds bin/: migcage, libnvidia_ml_sim.so and nvidia-smi.
#
# On a simulated a100-7x1g, each scenario starts one long-running container asking for MIG
# device 0:1 whose process runs the isolation probe, tells this script, waits until it has run
# `systemctl daemon-reload` (systemd re-applies the unit's device policy then), and probes again.
# A probe is ok when the container's own nodes open to ENXIO (the cgroup lets them through; no
# driver is behind a simulated node) and every other node of the host (bind-mounted on /hostdev)
# to EPERM. Each scenario prints `VM-RESULT <mode> before=<ok|FAIL: why> after=<ok|FAIL: why>`;
# the script ends with a table. It exits 0 when every scenario ran (FAILs are results: the host
# side compares them with its expectations), non-zero when the setup itself broke.
#
# MIGCAGE_VM_MODES (space separated) runs only the named scenarios.
set -euo pipefail
share=$(pwd)
die() { echo "scenarios: $*" >&2; exit 1; }
[[ -x $share/bin/migcage ]] || die "no bin/migcage in the share"

lib=/usr/local/lib/migcage-vm
sim=/var/lib/migcage-sim
work=/var/lib/migcage-vm
mkdir -p "$lib" "$work" /etc/migcage
cp "$share/bin/migcage" "$share/bin/libnvidia_ml_sim.so" "$share/bin/nvidia-smi" "$lib/"
ln -sf "$lib/migcage" /usr/local/bin/migcage
ln -sf "$lib/migcage" /usr/local/bin/migcage-runtime
migcage simulate --topology a100-7x1g --root "$sim" --sim-artifacts "$lib" >/dev/null
# The default path: every engine's children (dockerd, containerd's shims, conmon) find it
# without an environment variable.
cp "$sim/config.toml" /etc/migcage/config.toml
# Software emulation (a debug build under TCG, on a machine that may be busy) is tens of times
# slower than a host, where a call to systemd takes milliseconds: give the hook's two calls room.
sed -i 's/^systemd_timeout_ms = .*/systemd_timeout_ms = 15000/' /etc/migcage/config.toml
grep -q '^systemd_timeout_ms = 15000$' /etc/migcage/config.toml || die "no systemd_timeout_ms in the config"
want_dev=0:1

# The nodes device $want_dev must get (container path and major:minor), from migcage itself.
listing=$(migcage list --json)
mapfile -t own < <(jq -r --arg d "$want_dev" '(.common_nodes[], (.gpus[].mig_devices[] |
  select(.index == $d) | .nodes[])) | "\(.path) \(.major):\(.minor)"' <<<"$listing")
((${#own[@]})) || die "migcage list names no nodes for $want_dev"
own_numbers=" "
for n in "${own[@]}"; do own_numbers+="${n#* } "; done
# Every node of the simulated host: its path under dev/ and major:minor (decimal).
mapfile -t host_nodes < <(cd "$sim/dev" && for f in nvidia* nvidia-caps/*; do
  [[ -c $f ]] && echo "$f $(stat -c '%Hr:%Lr' "$f")"; done)

# A busybox root filesystem, plain and as a tar for the engines' `import`.
rootfs=$work/rootfs
rm -f "$work/podman-ready" "$work/docker-ready"
rm -rf "$rootfs" && mkdir -p "$rootfs/bin"
cp /bin/busybox "$rootfs/bin/busybox"
for a in sh cat ls stat find echo sed grep sleep true env; do ln -s busybox "$rootfs/bin/$a"; done
mkdir -p "$rootfs"/{dev,proc,sys,tmp,etc,hostdev,sync}
tar -C "$rootfs" -cf "$work/busybox.tar" .

# tests/common/mod.rs's PROBE (less its procfs part), then the handshake, then PROBE again.
# shellcheck disable=SC2016 # expanded in the container
probe='
probe() { out=$(cat "$1" 2>&1 </dev/null); case "$out" in
  *"No such device or address"*) r=ENXIO;; *"Operation not permitted"*) r=EPERM;;
  *"No such file"*) r=ENOENT;; *) r="OTHER";; esac; echo "OPEN $1 $r"; }
for f in /dev/nvidia* /dev/nvidia-caps/*; do [ -e "$f" ] && [ ! -d "$f" ] && stat -c "NODE %n %t:%T %a" "$f"; done
for f in /hostdev/nvidia* /hostdev/nvidia-caps/*; do [ -c "$f" ] && probe "$f"; done
for f in /dev/nvidia* /dev/nvidia-caps/*; do [ -c "$f" ] && probe "$f"; done
echo PROBE-DONE
'
container_script="$probe
touch /sync/probed
i=0; while [ ! -e /sync/reloaded ] && [ \$i -lt 600 ]; do sleep 0.2; i=\$((i+1)); done
$probe"

# check FILE N: the verdict on the N-th probe's output in FILE.
check() {
  local out=$1 n=$2 section line path num want got bad=() own_ok=0 other_ok=0 others=0
  section=$(awk -v n="$n" '/^PROBE-DONE/ {k++; if (k == n) {print "DONE"; exit}; next} k == n - 1' "$out")
  [[ $section == *DONE ]] || { echo "FAIL: probe $n did not run"; return; }
  for line in "${host_nodes[@]}"; do
    path=/hostdev/${line% *} num=${line#* }
    if [[ $own_numbers == *" $num "* ]]; then want=ENXIO; else want=EPERM; others=$((others + 1)); fi
    got=$(awk -v p="$path" '$1 == "OPEN" && $2 == p {print $3}' <<<"$section")
    if [[ $got == "$want" ]]; then
      [[ $want == ENXIO ]] && own_ok=$((own_ok + 1))
      [[ $want == EPERM ]] && other_ok=$((other_ok + 1))
    else
      bad+=("$path(${num}) ${got:-none}!=$want")
    fi
  done
  for line in "${own[@]}"; do
    path=${line% *}
    got=$(awk -v p="$path" '$1 == "OPEN" && $2 == p {print $3}' <<<"$section")
    [[ $got == ENXIO ]] || bad+=("$path ${got:-missing}!=ENXIO")
  done
  if ((${#bad[@]} == 0)); then
    echo ok
  else
    echo "FAIL: own $own_ok/${#own[@]} ENXIO, others $other_ok/$others EPERM; ${bad[0]}"
  fi
}

declare -A verify=()
# scenario MODE PREPARE CLEANUP CMD...: run CMD (a container running $container_script with the
# sync directory on /sync and the simulated nodes on /hostdev) through the reload handshake.
results=()
scenario() {
  local mode=$1 prepare=$2 cleanup=$3 pid i before after
  shift 3
  if [[ -n ${MIGCAGE_VM_MODES:-} && " $MIGCAGE_VM_MODES " != *" $mode "* ]]; then return; fi
  local d=$work/$mode
  rm -rf "$d" && mkdir -p "$d/sync"
  echo "== $mode" >&2
  local t0=$SECONDS
  # In a subshell with errexit on (an `if` would turn it off): any failing step stops it.
  local prc=0
  set +e
  (set -e; "$prepare" "$d") >"$d/prepare.log" 2>&1
  prc=$?
  set -e
  if ((prc != 0)); then
    before="FAIL: setup: $(grep -v '^\s*$' "$d/prepare.log" | tail -n 3 | tr '\n' ' ' | cut -c1-300)"
    after=$before
  else
    "$@" >"$d/out" 2>"$d/err" </dev/null &
    pid=$!
    for ((i = 0; i < 600; i++)); do
      [[ -e $d/sync/probed ]] && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if [[ -e $d/sync/probed ]]; then
      systemctl daemon-reload
      sleep 1
    fi
    touch "$d/sync/reloaded"
    for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    before=$(check "$d/out" 1)
    after=$(check "$d/out" 2)
    if [[ $before == "FAIL: probe 1 did not run" ]]; then
      before+=" ($(grep -v '^\s*$' "$d/err" | tail -n 1 | cut -c1-200))"
    fi
  fi
  # A mode's own extra verdict (verify[MODE]: a function that prints why it failed, or nothing).
  local why=""
  if [[ -n ${verify[$mode]:-} && $after == ok ]]; then
    why=$("${verify[$mode]}" "$d" 2>&1 | head -n 1)
    [[ -z $why ]] || after="FAIL: $why"
  fi
  "$cleanup" "$d" >>"$d/prepare.log" 2>&1 || true
  local line="VM-RESULT $mode before=$before after=$after"
  echo "$line"
  echo "   ($((SECONDS - t0)) s)" >&2
  if [[ ($before != ok || $after != ok) && -f $d/err ]]; then
    sed 's/^/   err: /' "$d/err" | tail -n 5 >&2
  fi
  if [[ $before != ok || $after != ok ]]; then
    # What migcage itself said of this container (its systemd registration above all).
    jq -c --arg c "vm-${mode}" 'select(.container == $c) | {stage, outcome, cgroup, systemd, error}' \
      "$sim/migcage.log" "$d/migcage.log" 2>/dev/null | tail -n 3 | sed 's/^/   log: /' >&2 || true
  fi
  results+=("$line")
}
none() { :; }

# --- runc and crun bundles ------------------------------------------------------------------
# bundle DIR HOOK(yes|no) CGROUPS_PATH
bundle() {
  local d=$1 hook=$2 cgpath=$3
  ln -s "$rootfs" "$d/rootfs"
  jq -n --arg script "$container_script" --arg hostdev "$sim/dev" --arg sync "$d/sync" \
    --arg cg "$cgpath" --arg hook "$hook" --arg want "NVIDIA_VISIBLE_DEVICES=$want_dev" '{
    ociVersion: "1.0.2",
    process: {terminal: false, user: {uid: 0, gid: 0}, args: ["sh", "-c", $script],
      env: ["PATH=/bin", $want], cwd: "/", noNewPrivileges: true,
      capabilities: {bounding: ["CAP_CHOWN"], effective: ["CAP_CHOWN"], permitted: ["CAP_CHOWN"]}},
    root: {path: "rootfs", readonly: false},
    hostname: "migcage-vm",
    mounts: [
      {destination: "/proc", type: "proc", source: "proc"},
      {destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"]},
      {destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"]},
      {destination: "/hostdev", type: "bind", source: $hostdev, options: ["rbind", "ro"]},
      {destination: "/sync", type: "bind", source: $sync, options: ["rbind", "rw"]}],
    linux: {cgroupsPath: $cg, resources: {devices: [{allow: false, access: "rwm"}]},
      namespaces: [{type: "pid"}, {type: "ipc"}, {type: "uts"}, {type: "mount"}, {type: "network"}]}
  } + if $hook == "yes" then {hooks: {prestart: [{path: "/usr/local/bin/migcage",
      args: ["migcage", "hook", "prestart"]}]}} else {} end' >"$d/config.json"
}
# The rootfs is shared read-write by the bundles; the hook makes the nodes in it, so each
# container gets its own copy.
own_rootfs() { rm -f "$1/rootfs"; cp -a "$rootfs" "$1/rootfs"; }
prep_systemd_hook() { bundle "$1" yes "system.slice:runc:vm-${1##*/}"; own_rootfs "$1"; }
prep_systemd_bare() { bundle "$1" no "system.slice:runc:vm-${1##*/}"; own_rootfs "$1"; }
prep_cgroupfs_hook() { bundle "$1" yes "/migcage-vm/${1##*/}"; own_rootfs "$1"; }
# Real /dev/char/M:m links for the simulated nodes (runc gives systemd DeviceAllow= only for
# devices it can stat there): for the -devchar scenario only, removed by its cleanup.
prep_systemd_bare_devchar() {
  local line
  prep_systemd_bare "$1"
  for line in "${host_nodes[@]}"; do
    ln -sfn "$sim/dev/${line%% *}" "/dev/char/${line#* }"
    echo "/dev/char/${line#* }" >>"$1/devchar"
  done
}
unlink_devchar() {
  local l
  [[ -f $1/devchar ]] || return 0
  while read -r l; do rm -f "$l"; done <"$1/devchar"
}
runc_gone() { runc delete -f "vm-${1##*/}" 2>/dev/null || true; }
crun_gone() { crun delete -f "vm-${1##*/}" 2>/dev/null || true; }
runc_gone_devchar() { runc_gone "$1"; unlink_devchar "$1"; }

in_bundle() { local d=$1; shift; cd "$d" && exec "$@"; }

run_runc_systemd() { in_bundle "$1" runc --systemd-cgroup run --bundle "$1" "vm-${1##*/}"; }
run_runc_cgroupfs() { in_bundle "$1" runc run --bundle "$1" "vm-${1##*/}"; }
run_wrapper_systemd() { in_bundle "$1" migcage runtime --systemd-cgroup run --bundle "$1" "vm-${1##*/}"; }
run_crun_systemd() { in_bundle "$1" crun --cgroup-manager=systemd run --bundle "$1" "vm-${1##*/}"; }
run_crun_cgroupfs() { in_bundle "$1" crun --cgroup-manager=cgroupfs run --bundle "$1" "vm-${1##*/}"; }
d_of() { echo "$work/$1"; }

scenario runc-systemd-hook prep_systemd_hook runc_gone run_runc_systemd "$(d_of runc-systemd-hook)"
# A kernel without openat2 (before 5.6; RHEL 8's 4.18), as a seccomp filter makes it: runc and
# its hook under SystemCallFilter=~openat2 with ENOSYS, the errno an old kernel gives. The hook
# must fall back to its own walk of the rootfs (its debug log says so) and grant exactly the same.
prep_no_openat2() {
  prep_systemd_hook "$1"
  sed -e 's/^level = .*/level = "debug"/' -e "s|^file = .*|file = \"$1/migcage.log\"|" \
    /etc/migcage/config.toml >"$1/config.toml"
  jq --arg c "MIGCAGE_CONFIG=$1/config.toml" '.hooks.prestart[0].env = [$c]' "$1/config.json" >"$1/c.json"
  mv "$1/c.json" "$1/config.json"
}
run_runc_systemd_no_openat2() {
  in_bundle "$1" systemd-run --quiet --wait --pipe --collect --unit "vm-no-openat2-$$" \
    -p SystemCallFilter=~openat2 -p SystemCallErrorNumber=ENOSYS \
    runc --systemd-cgroup run --bundle "$1" "vm-${1##*/}"
}
walked_without_openat2() {
  grep -q 'openat2 is not usable here' "$1/migcage.log" 2>/dev/null ||
    echo "the hook's log does not say it resolved the rootfs without openat2"
}
verify[runc-systemd-hook-no-openat2]=walked_without_openat2
scenario runc-systemd-hook-no-openat2 prep_no_openat2 runc_gone run_runc_systemd_no_openat2 "$(d_of runc-systemd-hook-no-openat2)"
scenario runc-systemd-runtime prep_systemd_bare runc_gone run_wrapper_systemd "$(d_of runc-systemd-runtime)"
scenario runc-systemd-runtime-devchar prep_systemd_bare_devchar runc_gone_devchar run_wrapper_systemd "$(d_of runc-systemd-runtime-devchar)"
scenario runc-cgroupfs-hook prep_cgroupfs_hook runc_gone run_runc_cgroupfs "$(d_of runc-cgroupfs-hook)"
scenario crun-systemd-hook prep_systemd_hook crun_gone run_crun_systemd "$(d_of crun-systemd-hook)"
scenario crun-cgroupfs-hook prep_cgroupfs_hook crun_gone run_crun_cgroupfs "$(d_of crun-cgroupfs-hook)"

# --- Podman (root, its systemd cgroup manager) ------------------------------------------------
# Its own storage, vfs, set in storage.conf: given only as --storage-driver, Podman 4.3 refuses
# its own database here ("database storage graph driver "" does not match ... vfs").
mkdir -p /etc/containers
printf '[storage]\ndriver = "vfs"\ngraphroot = "%s"\nrunroot = "%s"\n' \
  "$work/podman/root" "$work/podman/runroot" >/etc/containers/storage.conf
rm -rf "$work/podman"
podman_opts=()
prep_podman() {
  if [[ ! -e $work/podman-ready ]]; then
    podman "${podman_opts[@]}" import "$work/busybox.tar" localhost/migcage-vm:bb >/dev/null
    mkdir -p "$work/hooks.d" /etc/cdi
    jq '.hook.path = "/usr/local/bin/migcage"' "$share/hooks/oci-migcage-hook.json" >"$work/hooks.d/oci-migcage-hook.json"
    migcage cdi generate --output /etc/cdi/ >/dev/null
    touch "$work/podman-ready"
  fi
  podman "${podman_opts[@]}" info --format '{{.Host.CgroupManager}} {{.Host.CgroupsVersion}}' >"$1/podman-info"
  grep -q '^systemd v2$' "$1/podman-info" || { echo "podman: cgroup manager $(cat "$1/podman-info")"; return 1; }
}
podman_gone() { podman "${podman_opts[@]}" rm -f "vm-${1##*/}" >/dev/null 2>&1 || true; }
podman_run() {
  local d=$1; shift
  exec podman "${podman_opts[@]}" run --rm --name "vm-${d##*/}" --network=none \
    -v "$sim/dev:/hostdev:ro" -v "$d/sync:/sync" "$@" localhost/migcage-vm:bb sh -c "$container_script"
}
run_podman_hooksd_runc() { podman_run "$1" --runtime runc --hooks-dir "$work/hooks.d" -e "NVIDIA_VISIBLE_DEVICES=$want_dev"; }
run_podman_hooksd_crun() { podman_run "$1" --runtime crun --hooks-dir "$work/hooks.d" -e "NVIDIA_VISIBLE_DEVICES=$want_dev"; }
run_podman_cdi_runc() { podman_run "$1" --runtime runc --device "nvidia.com/gpu=$want_dev"; }
run_podman_runtime() { podman_run "$1" --runtime /usr/local/bin/migcage-runtime -e "NVIDIA_VISIBLE_DEVICES=$want_dev"; }

scenario podman-hooksd-runc prep_podman podman_gone run_podman_hooksd_runc "$(d_of podman-hooksd-runc)"
scenario podman-hooksd-crun prep_podman podman_gone run_podman_hooksd_crun "$(d_of podman-hooksd-crun)"
scenario podman-cdi-runc prep_podman podman_gone run_podman_cdi_runc "$(d_of podman-cdi-runc)"
scenario podman-runtime-runc prep_podman podman_gone run_podman_runtime "$(d_of podman-runtime-runc)"

# --- Docker (the image's dockerd: systemd cgroup driver) --------------------------------------
prep_docker() {
  if [[ ! -e $work/docker-ready ]]; then
    # `--gpus` runs an executable of this name found on dockerd's PATH when it starts.
    ln -sf "$lib/migcage" /usr/local/bin/nvidia-container-runtime-hook
    jq '.runtimes.migcage.path = "/usr/local/bin/migcage-runtime"' /etc/docker/daemon.json >"$work/daemon.json"
    cp "$work/daemon.json" /etc/docker/daemon.json
    systemctl restart docker
    docker import "$work/busybox.tar" migcage-vm:bb >/dev/null
    touch "$work/docker-ready"
  fi
  docker info --format '{{.CgroupDriver}} {{.CgroupVersion}}' >"$1/docker-info"
  grep -q '^systemd 2$' "$1/docker-info" || { echo "docker: cgroup driver $(cat "$1/docker-info")"; return 1; }
}
docker_gone() { docker rm -f "vm-${1##*/}" >/dev/null 2>&1 || true; }
docker_run() {
  local d=$1; shift
  exec docker run --rm --name "vm-${d##*/}" --network=none \
    -v "$sim/dev:/hostdev:ro" -v "$d/sync:/sync" "$@" migcage-vm:bb sh -c "$container_script"
}
run_docker_gpus() { docker_run "$1" --gpus "device=$want_dev"; }
run_docker_runtime() { docker_run "$1" --runtime migcage -e "NVIDIA_VISIBLE_DEVICES=$want_dev"; }

scenario docker-gpus prep_docker docker_gone run_docker_gpus "$(d_of docker-gpus)"
scenario docker-runtime prep_docker docker_gone run_docker_runtime "$(d_of docker-runtime)"

echo
printf '%-30s %-8s %s\n' MODE BEFORE AFTER
for line in "${results[@]}"; do
  mode=${line#VM-RESULT } mode=${mode%% *}
  b=${line#* before=} b=${b%% after=*}
  a=${line##* after=}
  printf '%-30s %-8s %s\n' "$mode" "${b%%:*}" "${a%%:*}"
done
