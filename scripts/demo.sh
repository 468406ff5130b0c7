#!/usr/bin/env bash
# The demo: a simulated A100 split into seven 1g.5gb MIG instances, and a real runc container
# that asks for instance 0:1 through migcage's OCI hook. Inside, the container opens every NVIDIA
# node of the host: the ones it was given open (ENXIO: allowed, no driver behind a simulated
# node), every other one is refused by its device cgroup (EPERM). Prints a verdict table and
# `demo: OK`, or `demo: FAILED: <why>` and exits 1. Run as root (simulate makes device nodes).
#
# Environment: CARGO_TARGET_DIR (where the build goes, as cargo has it); MIGCAGE_DEMO_BIN (a
# built migcage to use instead of building: tests/demo.rs); MIGCAGE_DEMO_DIR (keep the simulated
# host and bundle there instead of a temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."
fail() {
  echo "demo: FAILED: $*" >&2
  exit 1
}
[ "$(id -u)" = 0 ] || fail "run as root: simulate makes device nodes (mknod), runc needs cgroups"

# -- what it needs: runc, busybox-static, a C toolchain for cargo's linker ---------------------
# apt, waiting while another apt or dpkg holds its lock (update takes the lists lock, which
# DPkg::Lock::Timeout does not cover).
apt_wait() {
  local out i
  for i in $(seq 1 90); do
    if out=$(DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=10 "$@" 2>&1); then
      return 0
    fi
    if grep -qi "lock" <<<"$out"; then
      [ "$i" = 1 ] && echo "demo: waiting for the apt/dpkg lock another process holds"
      sleep 2
      continue
    fi
    echo "$out" >&2
    fail "apt-get $* failed"
  done
  fail "the apt/dpkg lock stayed held for 3 minutes"
}
missing=()
command -v runc >/dev/null || missing+=(runc)
command -v busybox >/dev/null || missing+=(busybox-static)
if [ -z "${MIGCAGE_DEMO_BIN:-}" ] && ! command -v cc >/dev/null; then missing+=(gcc libc6-dev); fi
if ((${#missing[@]})); then
  echo "demo: installing ${missing[*]}"
  apt_wait update -qq
  apt_wait install -y -qq --no-install-recommends "${missing[@]}"
fi
busybox="$(command -v busybox)"
file -L "$busybox" 2>/dev/null | grep -q "dynamically linked" &&
  fail "$busybox is dynamically linked: install busybox-static"

# -- build --------------------------------------------------------------------------------------
if [ -n "${MIGCAGE_DEMO_BIN:-}" ]; then
  bin="$MIGCAGE_DEMO_BIN"
else
  command -v cargo >/dev/null || fail "cargo (Rust >= 1.85) is needed: install it with rustup (https://rustup.rs)"
  echo "demo: building migcage and the simulated NVML (cargo build --workspace; minutes the first time)"
  cargo build --workspace
  bin="${CARGO_TARGET_DIR:-$PWD/target}/debug/migcage"
fi
[ -x "$bin" ] || fail "$bin is not an executable"
bin="$(realpath "$bin")"
export MIGCAGE_SIM_ARTIFACTS="${MIGCAGE_SIM_ARTIFACTS:-$(dirname "$bin")}"
start=$(date +%s%N)

# -- a simulated host and a container that asks for 0:1 ----------------------------------------
if [ -n "${MIGCAGE_DEMO_DIR:-}" ]; then
  demo="$MIGCAGE_DEMO_DIR"
  rm -rf "$demo/host" "$demo/bundle"
  mkdir -p "$demo"
else
  demo="$(mktemp -d /tmp/migcage-demo.XXXXXX)"
fi
id="migcage-demo-$$"
host="$demo/host" bundle="$demo/bundle"
cleanup() {
  runc delete --force "$id" >/dev/null 2>&1 || true
  # The poststop hook releases the lease; should it not have run, release it here.
  [ -f "$host/config.toml" ] && "$bin" --config "$host/config.toml" release "$id" >/dev/null 2>&1 || true
  [ -n "${MIGCAGE_DEMO_DIR:-}" ] || rm -rf "$demo"
}
trap cleanup EXIT

"$bin" simulate --topology a100-7x1g --root "$host" >/dev/null
export MIGCAGE_CONFIG="$host/config.toml"
echo "demo: simulated $("$bin" list | head -n 1)"
# What 0:1 must get: its two caps nodes (from `migcage list`), its parent GPU's node and the
# nodes every container with a device gets.
caps=$("$bin" list | awk '$1 == "0:1" { for (i = 1; i <= NF; i++) if ($i ~ /^\/dev\//) print $i }')
[ -n "$caps" ] || fail "'migcage list' shows no MIG device 0:1"
expected=$(printf '%s\n' /dev/nvidia0 /dev/nvidiactl /dev/nvidia-uvm /dev/nvidia-uvm-tools $caps | sort)

mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs/hostdev"
cp "$busybox" "$bundle/rootfs/bin/busybox"
for a in sh cat; do ln -sf busybox "$bundle/rootfs/bin/$a"; done
# Inside: name each node it was given, then open every NVIDIA node of the host (bind-mounted at
# /hostdev) and say what the open answered.
probe='for n in /dev/nvidia* /dev/nvidia-caps/*; do [ -c "$n" ] && echo "given $n"; done
for n in /dev/nvidia* /dev/nvidia-caps/* /hostdev/nvidia* /hostdev/nvidia-caps/*; do
  [ -c "$n" ] || continue
  case "$(cat "$n" 2>&1 </dev/null)" in
    *"No such device or address"*) echo "open $n" ;;
    *"Operation not permitted"*) echo "refused $n" ;;
    *) echo "unexpected $n" ;;
  esac
done'
hook() { printf '{"path": "%s", "args": ["migcage", "hook", "%s"], "env": ["MIGCAGE_CONFIG=%s"]}' "$bin" "$1" "$MIGCAGE_CONFIG"; }
probe_json=$(printf '%s' "$probe" | sed 's/\\/\\\\/g; s/"/\\"/g' | awk '{ printf "%s\\n", $0 }')
cat >"$bundle/config.json" <<JSON
{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/",
    "env": ["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=0:1"],
    "args": ["sh", "-c", "$probe_json"],
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
  },
  "root": {"path": "rootfs"},
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
    {"destination": "/hostdev", "type": "bind", "source": "$host/dev", "options": ["rbind", "ro"]}
  ],
  "hooks": {"prestart": [$(hook prestart)], "poststop": [$(hook poststop)]},
  "linux": {
    "resources": {"devices": [{"allow": false, "access": "rwm"}]},
    "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}, {"type": "network"}]
  }
}
JSON
echo "demo: runc runs a busybox container with NVIDIA_VISIBLE_DEVICES=0:1 and migcage's hook"
out=$(runc run --bundle "$bundle" "$id" 2>&1) || fail "runc run: $(tail -n 1 <<<"$out")"

# -- the verdict --------------------------------------------------------------------------------
given=$(awk '$1 == "given" { print $2 }' <<<"$out" | sort)
open_inside=$(awk '$1 == "open" && $2 !~ /^\/hostdev/ { print $2 }' <<<"$out" | sort)
open_host=$(awk '$1 == "open" && $2 ~ /^\/hostdev/ { sub("^/hostdev", "/dev", $2); print $2 }' <<<"$out" | sort)
refused=$(awk '$1 == "refused" { sub("^/hostdev", "/dev", $2); print $2 }' <<<"$out" | sort)
unexpected=$(awk '$1 == "unexpected" { print $2 }' <<<"$out")
host_nodes=$(find "$host/dev" -type c | sed "s|^$host||" | sort)
count() { [ -z "$1" ] && echo 0 || wc -l <<<"$1"; }
names() { [ -z "$1" ] && echo "-" || tr '\n' ' ' <<<"$1" | sed 's|/dev/||g; s/ $//'; }
others=$(comm -23 <(echo "$host_nodes") <(echo "$expected"))
printf '\n  %-11s %-3s %s\n' "given" "$(count "$given")" "$(names "$given")"
printf '  %-11s %-3s %s\n' "opened" "$(count "$open_host")" "$(names "$open_host") (ENXIO: allowed; no driver behind a simulated node)"
printf '  %-11s %-3s %s\n\n' "refused" "$(count "$refused")" "every other NVIDIA node of the host (EPERM from the device cgroup)"

[ -z "$unexpected" ] || fail "an open answered neither ENXIO nor EPERM: $(names "$unexpected")"
[ "$given" = "$expected" ] || fail "the container was given $(names "$given"), not exactly $(names "$expected")"
[ "$open_inside" = "$expected" ] || fail "the container could not open all of its own nodes: it opened $(names "$open_inside")"
[ "$open_host" = "$expected" ] || fail "the container opened $(names "$open_host") of the host's nodes, not exactly its own"
[ "$refused" = "$others" ] || fail "refused $(names "$refused"), not every other node ($(names "$others"))"
if "$bin" release "$id" >/dev/null 2>&1; then
  fail "the container's lease outlived it (its poststop hook did not release it)"
fi
ms=$((($(date +%s%N) - start) / 1000000))
echo "demo: OK: the container got MIG device 0:1 and nothing else ($((ms / 1000)).$((ms % 1000 / 100)) s after the build)"
