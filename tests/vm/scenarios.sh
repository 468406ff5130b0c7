#!/usr/bin/env bash
# Runs inside the test VM (scripts/vm/run.sh), as root, with systemd as PID 1 on pure cgroup v2.
# The share (the current directory) holds bin/: migcage, libnvidia_ml_sim.so and nvidia-smi, and
# units/: the packaged systemd units (packaging/migcage-cdi.*).
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

# The drivers' majors (decimal, space separated): a character device with one of them is a GPU's.
gpu_majors=$(for line in "${host_nodes[@]}"; do n=${line#* }; echo "${n%:*}"; done | sort -u | tr '\n' ' ')

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
# The rootless probe: no /hostdev (nothing but the cgroup would stop the container opening the
# other nodes there, and a rootless container has none); instead every character device in its
# tree, outside /proc and /sys, with its numbers (hex, as busybox stat prints them).
# shellcheck disable=SC2016 # expanded in the container
rootless_probe='
probe() { out=$(cat "$1" 2>&1 </dev/null); case "$out" in
  *"No such device or address"*) r=ENXIO;; *"Operation not permitted"*) r=EPERM;;
  *"Permission denied"*) r=EACCES;; *"No such file"*) r=ENOENT;; *) r="OTHER";; esac; echo "OPEN $1 $r"; }
find / \( -path /proc -o -path /sys \) -prune -o -type c -print 2>/dev/null | while read -r f; do stat -c "CHAR %n %t:%T" "$f"; done
for f in /dev/nvidia* /dev/nvidia-caps/*; do [ -c "$f" ] && probe "$f"; done
echo PROBE-DONE
'
# A probe, the handshake with this script (it runs `systemctl daemon-reload` in between), the
# probe again.
with_handshake() {
  printf '%s\n%s\n%s\n' "$1" 'touch /sync/probed
i=0; while [ ! -e /sync/reloaded ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i+1)); done' "$1"
}
container_script=$(with_handshake "$probe")
rootless_script=$(with_handshake "$rootless_probe")

# probe_section FILE N: the N-th probe's output in FILE, ending in DONE when it ran to its end.
probe_section() {
  awk -v n="$2" '/^PROBE-DONE/ {k++; if (k == n) {print "DONE"; exit}; next} k == n - 1' "$1"
}
# own_not_open SECTION: a line for each of $want_dev's nodes that did not open to ENXIO.
own_not_open() {
  local line path got
  for line in "${own[@]}"; do
    path=${line% *}
    got=$(awk -v p="$path" '$1 == "OPEN" && $2 == p {print $3}' <<<"$1")
    [[ $got == ENXIO ]] || echo "$path ${got:-missing}!=ENXIO"
  done
}

# check FILE N: the verdict on the N-th probe's output in FILE.
check() {
  local out=$1 n=$2 section line path num want got bad=() own_ok=0 other_ok=0 others=0
  section=$(probe_section "$out" "$n")
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
  mapfile -t -O "${#bad[@]}" bad < <(own_not_open "$section")
  if ((${#bad[@]} == 0)); then
    echo ok
  else
    echo "FAIL: own $own_ok/${#own[@]} ENXIO, others $other_ok/$others EPERM; ${bad[0]}"
  fi
}

# check_rootless FILE N: the verdict on a rootless container's N-th probe. Such a container has
# no device cgroup (its runtime runs in a user namespace and can make none): it reaches exactly
# what is mounted in it. Every character device in its tree with a GPU driver's major must be
# one of $want_dev's, each of those must be there and open (ENXIO), and the other instances'
# caps nodes must not be in it at all.
check_rootless() {
  local out=$1 n=$2 section path num dec maj bad=() seen=" " line
  section=$(probe_section "$out" "$n")
  [[ $section == *DONE ]] || { echo "FAIL: probe $n did not run"; return; }
  while read -r _ path num; do
    maj=$((16#${num%:*}))
    dec="$maj:$((16#${num#*:}))"
    [[ " $gpu_majors " == *" $maj "* ]] || continue
    seen+="$dec "
    [[ $own_numbers == *" $dec "* ]] || bad+=("$path($dec) is in the container but not $want_dev's")
  done < <(grep '^CHAR ' <<<"$section")
  for line in "${own[@]}"; do
    [[ $seen == *" ${line#* } "* ]] || bad+=("${line% *}(${line#* }) missing")
  done
  mapfile -t -O "${#bad[@]}" bad < <(own_not_open "$section")
  if ((${#bad[@]} == 0)); then
    echo ok
  else
    echo "FAIL: ${#bad[@]} wrong; ${bad[0]}"
  fi
}

declare -A verify=() checker=()
# scenario MODE PREPARE CLEANUP CMD...: run CMD (a container running $container_script with the
# sync directory on /sync and the simulated nodes on /hostdev) through the reload handshake.
results=()
scenario() {
  local mode=$1 prepare=$2 cleanup=$3 pid i before after
  shift 3
  if [[ -n ${MIGCAGE_VM_MODES:-} && " $MIGCAGE_VM_MODES " != *" $mode "* ]]; then return; fi
  local d=$work/$mode start_epoch
  rm -rf "$d" && mkdir -p "$d/sync"
  echo "== $mode" >&2
  local t0=$SECONDS
  start_epoch=$(date +%s)
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
    before=$("${checker[$mode]:-check}" "$d/out" 1)
    after=$("${checker[$mode]:-check}" "$d/out" 2)
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
    # A rootless hook cannot write that file: it logs to the journal.
    # (Podman names the container by its own id there, so: every record since the start.)
    journalctl -q -t migcage --since "@$start_epoch" -o cat 2>/dev/null |
      jq -c 'select(.stage) | {stage, outcome, cgroup, error}' 2>/dev/null | tail -n 3 | sed 's/^/   journal: /' >&2 || true
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
# What every Podman scenario shares, root or not: the hooks.d file and the CDI spec.
podman_files() {
  [[ -e $work/podman-files ]] && return 0
  mkdir -p "$work/hooks.d" /etc/cdi
  jq '.hook.path = "/usr/local/bin/migcage"' "$share/hooks/oci-migcage-hook.json" >"$work/hooks.d/oci-migcage-hook.json"
  migcage cdi generate --output /etc/cdi/ >/dev/null
  touch "$work/podman-files"
}
prep_podman() {
  podman_files
  if [[ ! -e $work/podman-ready ]]; then
    podman "${podman_opts[@]}" import "$work/busybox.tar" localhost/migcage-vm:bb >/dev/null
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

# --- Rootless Podman (crun; a user with subordinate ids and a systemd user session) -----------
# The engine, crun and migcage's hook run in the user's own user namespace: no mknod (the hook
# bind-mounts the host's nodes) and no device cgroup (check_rootless: what is mounted is what
# the container reaches). Each run's hook reads /etc/migcage/config.toml like root's.
rl_user=migcage-user
rl_uid() { id -u "$rl_user"; }
as_user() {
  local uid
  uid=$(rl_uid)
  cd / && runuser -u "$rl_user" -- env HOME="/home/$rl_user" XDG_RUNTIME_DIR="/run/user/$uid" \
    DBUS_SESSION_BUS_ADDRESS="unix:path=/run/user/$uid/bus" PATH=/usr/local/bin:/usr/bin:/bin "$@"
}
prep_rootless() {
  local uid i f
  podman_files
  if [[ ! -e $work/rootless-ready ]]; then
    id -u "$rl_user" >/dev/null 2>&1 || useradd -m -s /bin/sh "$rl_user"
    for f in /etc/subuid /etc/subgid; do
      grep -q "^$rl_user:" "$f" 2>/dev/null || echo "$rl_user:300000:65536" >>"$f"
    done
    uid=$(rl_uid)
    loginctl enable-linger "$rl_user"
    systemctl start "user@$uid.service"
    for ((i = 0; i < 300; i++)); do [[ -S /run/user/$uid/bus ]] && break; sleep 0.2; done
    [[ -S /run/user/$uid/bus ]] || { echo "no user bus for $rl_user after 60 s"; return 1; }
    install -d -o "$rl_user" -g "$rl_user" "/home/$rl_user/.config" "/home/$rl_user/.config/containers"
    printf '[storage]\ndriver = "vfs"\n' >"/home/$rl_user/.config/containers/storage.conf"
    chown "$rl_user:" "/home/$rl_user/.config/containers/storage.conf"
    as_user podman import "$work/busybox.tar" localhost/migcage-vm:bb >/dev/null
    touch "$work/rootless-ready"
  fi
  chown "$rl_user:" "$1/sync"
  as_user podman info --format '{{.Host.CgroupManager}} {{.Host.CgroupsVersion}} {{.Host.Security.Rootless}}' >"$1/podman-info"
  grep -q '^systemd v2 true$' "$1/podman-info" || { echo "rootless podman: $(cat "$1/podman-info")"; return 1; }
}
rootless_gone() { as_user podman rm -f "vm-${1##*/}" >/dev/null 2>&1 || true; }
rootless_run() {
  local d=$1; shift
  as_user podman run --rm --name "vm-${d##*/}" --network=none --runtime crun \
    -v "$d/sync:/sync" "$@" localhost/migcage-vm:bb sh -c "$rootless_script"
}
# A rootless runtime cannot mknod: it bind-mounts each of the spec's devices from the host's
# path of the same name (an OCI device has no host path), so the CDI case needs the nodes where
# a real driver makes them, in /dev. They are copies of the simulated ones (same numbers, mode,
# owner), made for this scenario only and removed by its cleanup.
prep_rootless_devnodes() {
  local line f
  prep_rootless "$1"
  for line in "${host_nodes[@]}"; do
    f=${line%% *}
    [[ -e /dev/$f ]] && continue
    mkdir -p "$(dirname "/dev/$f")"
    cp -a "$sim/dev/$f" "/dev/$f"
    echo "/dev/$f" >>"$1/devnodes"
  done
}
rootless_gone_devnodes() {
  local f
  rootless_gone "$1"
  [[ -f $1/devnodes ]] || return 0
  while read -r f; do rm -f "$f"; done <"$1/devnodes"
  rmdir /dev/nvidia-caps 2>/dev/null || true
}
run_rootless_cdi() { rootless_run "$1" --device "nvidia.com/gpu=$want_dev"; }
run_rootless_hooksd() { rootless_run "$1" --hooks-dir "$work/hooks.d" -e "NVIDIA_VISIBLE_DEVICES=$want_dev"; }
checker[rootless-podman-cdi-crun]=check_rootless
checker[rootless-podman-hooksd-crun]=check_rootless
scenario rootless-podman-cdi-crun prep_rootless_devnodes rootless_gone_devnodes run_rootless_cdi "$(d_of rootless-podman-cdi-crun)"
scenario rootless-podman-hooksd-crun prep_rootless rootless_gone run_rootless_hooksd "$(d_of rootless-podman-hooksd-crun)"

# refusal MODE PREPARE CLEANUP WANT CMD...: CMD (a container that must not start) fails, its
# stderr says WANT, and the lease store is as it was. A refusal has no reload step: its verdict
# fills both columns.
leases=$sim/run/migcage/leases.json
refusal() {
  local mode=$1 prepare=$2 cleanup=$3 want=$4 verdict=ok prc rc store
  shift 4
  if [[ -n ${MIGCAGE_VM_MODES:-} && " $MIGCAGE_VM_MODES " != *" $mode "* ]]; then return; fi
  local d=$work/$mode
  rm -rf "$d" && mkdir -p "$d/sync"
  echo "== $mode" >&2
  set +e
  (set -e; "$prepare" "$d") >"$d/prepare.log" 2>&1
  prc=$?
  set -e
  if ((prc != 0)); then
    verdict="FAIL: setup: $(grep -v '^\s*$' "$d/prepare.log" | tail -n 3 | tr '\n' ' ' | cut -c1-300)"
  else
    store=$(cat "$leases" 2>/dev/null || echo none)
    local since
    since=$(date +%s)
    set +e
    "$@" >"$d/out" 2>"$d/err" </dev/null
    rc=$?
    set -e
    sleep 1
    # crun under Podman does not show the hook's stderr; the hook's record in the journal
    # (where a rootless hook logs) carries the same line.
    journalctl -q -t migcage --since "@$since" -o cat 2>/dev/null | jq -r 'select(.error) | .error' \
      >>"$d/err" 2>/dev/null || true
    if ((rc == 0)); then
      verdict="FAIL: the container started"
    elif ! grep -qF -- "$want" "$d/err"; then
      verdict="FAIL: its error does not say '$want' ($(grep -v '^\s*$' "$d/err" | tail -n 1 | cut -c1-300))"
    elif [[ $(cat "$leases" 2>/dev/null || echo none) != "$store" ]]; then
      verdict="FAIL: the lease store changed"
    fi
  fi
  "$cleanup" "$d" >>"$d/prepare.log" 2>&1 || true
  local line="VM-RESULT $mode before=$verdict after=$verdict"
  echo "$line"
  results+=("$line")
}
# A rootless user cannot write root's state_dir: a request by profile (a lease) is refused with
# the line that names the key, and nothing is leased.
run_rootless_profile() {
  as_user podman run --rm --name vm-rootless-podman-profile-refused --network=none --runtime crun \
    --hooks-dir "$work/hooks.d" -e NVIDIA_VISIBLE_DEVICES=profile:1g.5gb localhost/migcage-vm:bb true
}
refusal rootless-podman-profile-refused prep_rootless rootless_gone "a request by profile takes a lease in state_dir" run_rootless_profile

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

# --- The CDI spec's path unit (packaging/migcage-cdi.path) -------------------------------------
# The shipped units, installed as the package does (ExecStart pointed at this VM's migcage; a
# drop-in points the service's driver condition at the simulated driver's procfs, as an admin's
# would). A rewritten DKMS module of the running kernel before `daemon-reload`, and a repointed
# NVML soname link after it, then the MIG layout stamp that migcage rewrites after every layout
# change (/run/migcage/mig-layout-changed; tests/on_demand_e2e.rs checks that migcage writes
# it), must each regenerate /var/run/cdi/nvidia.com-gpu.yaml within 30 s, and the spec must match
# the host (`migcage cdi list --check`). Last: Podman reads /var/run/cdi.
cdi_spec_after() {
  local spec=/var/run/cdi/nvidia.com-gpu.yaml i out
  rm -f "$spec"
  "$@"
  for ((i = 0; i < 150; i++)); do [[ -s $spec ]] && break; sleep 0.2; done
  if [[ ! -s $spec ]]; then
    echo "FAIL: no $spec 30 s after: $* ($(systemctl show -p ActiveState,Result migcage-cdi.path migcage-cdi.service | tr '\n' ' '))"
  elif ! out=$(migcage cdi list --check 2>&1); then
    echo "FAIL: cdi list --check: $(tail -n 1 <<<"$out" | cut -c1-200)"
  else
    echo ok
  fi
}
cdi_path_unit() {
  local mode=cdi-path-unit before after units=/etc/systemd/system
  if [[ -n ${MIGCAGE_VM_MODES:-} && " $MIGCAGE_VM_MODES " != *" $mode "* ]]; then return; fi
  echo "== $mode" >&2
  sed 's|^ExecStart=/usr/bin/migcage |ExecStart=/usr/local/bin/migcage |' \
    "$share/units/migcage-cdi.service" >"$units/migcage-cdi.service"
  cp "$share/units/migcage-cdi.path" "$units/migcage-cdi.path"
  mkdir -p "$units/migcage-cdi.service.d"
  printf '[Unit]\nConditionPathExists=\nConditionPathExists=%s/proc/driver/nvidia\n' "$sim" \
    >"$units/migcage-cdi.service.d/simulated.conf"
  local modules
  modules=/lib/modules/$(uname -r)/updates/dkms
  mkdir -p "$modules" /usr/lib/x86_64-linux-gnu
  systemctl daemon-reload
  systemctl enable --now migcage-cdi.path >/dev/null 2>&1
  before=$(cdi_spec_after sh -c "echo 550.54.15 >$modules/nvidia.ko")
  systemctl daemon-reload
  sleep 1
  after=$(cdi_spec_after ln -sfn "$sim/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.54.15" \
    /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1)
  local layout
  layout=$(cdi_spec_after sh -c 'mkdir -p /run/migcage && date +%s >/run/migcage/mig-layout-changed')
  [[ $after != ok ]] || after=$layout
  systemctl disable --now migcage-cdi.path >/dev/null 2>&1 || true
  rm -f /var/run/cdi/nvidia.com-gpu.yaml /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1 "$modules/nvidia.ko"
  local line="VM-RESULT $mode before=$before after=$after"
  echo "$line"
  results+=("$line")
}
cdi_path_unit

echo
printf '%-30s %-8s %s\n' MODE BEFORE AFTER
for line in "${results[@]}"; do
  mode=${line#VM-RESULT } mode=${mode%% *}
  b=${line#* before=} b=${b%% after=*}
  a=${line##* after=}
  printf '%-30s %-8s %s\n' "$mode" "${b%%:*}" "${a%%:*}"
done
