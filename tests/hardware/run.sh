#!/usr/bin/env bash
# Hardware check: migcage on a real NVIDIA driver. Builds nothing: it takes the migcage binary,
# a runc binary and a busybox binary as inputs, so it can be carried to a machine without
# package registries. Never changes the GPU's MIG mode and never resets it.
#
#   tests/hardware/run.sh --migcage PATH --runc PATH --busybox PATH [--config FILE] [--out FILE]
#
# Each check prints `PASS <name>` or `FAIL <name>: <why>`; the exit code is the number of
# failures. With --out, the whole report (date, GPU, driver, kernel, every check) is written
# there as Markdown (docs/hardware-validation.md is such a report).
set -uo pipefail

migcage="" runc="" busybox="" config="" out=""
while (($#)); do
  case "$1" in
    --migcage) migcage="$2"; shift 2 ;;
    --runc) runc="$2"; shift 2 ;;
    --busybox) busybox="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: $0 --migcage PATH --runc PATH --busybox PATH [--config FILE] [--out FILE]" >&2; exit 2 ;;
  esac
done
for v in migcage runc busybox; do
  [ -x "${!v}" ] || { echo "hardware: --$v ${!v:-<missing>} is not an executable file" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "hardware: run as root (runc, mknod, cgroups)" >&2; exit 2; }
[ -n "$config" ] && export MIGCAGE_CONFIG="$config"
nvsmi="${NVIDIA_SMI:-$(command -v nvidia-smi || true)}"

work="$(mktemp -d /tmp/migcage-hw.XXXXXX)"
trap 'rm -rf "$work"' EXIT
report="$work/report.md"
fails=0
log() { printf '%s\n' "$*" | tee -a "$report"; }
pass() { log "PASS $1"; }
fail() { log "FAIL $1: $2"; fails=$((fails + 1)); }
block() { { echo '```'; cat "$1"; echo '```'; } >> "$report"; }

log "# migcage hardware validation"
log ""
log "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
log "- kernel: $(uname -r)"
log "- driver: $("$migcage" list --json 2>/dev/null | sed -n 's/^ *"driver_version": "\([^"]*\)".*/\1/p' | head -n 1)"
if [ -n "$nvsmi" ]; then
  gpus="$("$nvsmi" --query-gpu=name,mig.mode.current --format=csv,noheader 2>/dev/null)" || gpus=""
  [ -n "$gpus" ] || gpus="$("$nvsmi" -L 2>/dev/null | grep '^GPU')"
  gpus="$(printf '%s' "$gpus" | paste -sd ';')"
  log "- GPUs: $gpus"
fi
log "- migcage: $("$migcage" --version)"
log ""

# 1. doctor
if "$migcage" doctor > "$work/doctor" 2>&1; then pass "migcage doctor"; else fail "migcage doctor" "exit $?"; fi
block "$work/doctor"

# 2. list --json against nvidia-smi -L: every GPU and MIG UUID nvidia-smi prints, migcage lists.
if "$migcage" list --json > "$work/list.json" 2> "$work/list.err"; then
  pass "migcage list --json"
  if [ -n "$nvsmi" ]; then
    "$nvsmi" -L > "$work/smi" 2>&1
    block "$work/smi"
    grep -o 'UUID: [A-Za-z0-9-]*' "$work/smi" | cut -d' ' -f2 | sort > "$work/smi.uuids"
    grep -o '"uuid": "[^"]*"' "$work/list.json" | cut -d'"' -f4 | sort > "$work/list.uuids"
    if diff -u "$work/smi.uuids" "$work/list.uuids" > "$work/uuid.diff"; then
      pass "list matches nvidia-smi -L ($(wc -l < "$work/list.uuids") UUIDs)"
    else
      fail "list matches nvidia-smi -L" "UUIDs differ"; block "$work/uuid.diff"
    fi
  else
    fail "list matches nvidia-smi -L" "nvidia-smi not found (set NVIDIA_SMI)"
  fi
else
  fail "migcage list --json" "$(head -n 1 "$work/list.err")"
fi

# 3. cdi generate: a JSON document with cdiVersion, kind and devices.
if "$migcage" cdi generate --format json --output "$work/cdi.json" > "$work/cdi.out" 2>&1 \
  && grep -q '"cdiVersion"' "$work/cdi.json" && grep -q '"kind"' "$work/cdi.json" && grep -q '"devices"' "$work/cdi.json"; then
  pass "migcage cdi generate ($(grep -c '"name"' "$work/cdi.json") names)"
else
  fail "migcage cdi generate" "$(head -n 1 "$work/cdi.out")"
fi

# 4. mig capacity, read-only: NVML's possible placements and remaining capacity of every MIG
# profile against migcage's placement tables. Nothing here creates or destroys an instance: the
# create and destroy path of `migcage mig apply` is verified only against the simulator.
if "$migcage" mig capacity > "$work/capacity" 2>&1; then
  pass "mig capacity agrees with migcage's placement tables ($(wc -l < "$work/capacity") profiles)"
else
  fail "mig capacity" "$(tail -n 1 "$work/capacity")"
fi
block "$work/capacity"

# 5. Containers: a busybox rootfs with the host's glibc (the injected nvidia-smi is dynamically
# linked), run by runc with the hook.
rootfs="$work/bundle/rootfs"
mkdir -p "$rootfs/bin" "$rootfs/proc" "$rootfs/dev" "$rootfs/etc" "$rootfs/lib64" "$rootfs/lib/x86_64-linux-gnu"
cp "$busybox" "$rootfs/bin/busybox"
for a in sh ls cat; do ln -s busybox "$rootfs/bin/$a"; done
for f in /lib64/ld-linux-x86-64.so.2 /lib/x86_64-linux-gnu/libc.so.6 /lib/x86_64-linux-gnu/libm.so.6 \
  /lib/x86_64-linux-gnu/libdl.so.2 /lib/x86_64-linux-gnu/libpthread.so.0 /lib/x86_64-linux-gnu/librt.so.1 \
  /lib/x86_64-linux-gnu/libgcc_s.so.1; do
  [ -e "$f" ] && cp -L "$f" "$rootfs$f"
done
run_container() { # $1 name, $2 NVIDIA_VISIBLE_DEVICES or "", $3 script
  local env='"PATH=/bin:/usr/bin"'
  [ -n "$2" ] && env="$env, \"NVIDIA_VISIBLE_DEVICES=$2\", \"NVIDIA_DRIVER_CAPABILITIES=utility,compute\""
  local hookenv='[]'
  [ -n "${MIGCAGE_CONFIG:-}" ] && hookenv="[\"MIGCAGE_CONFIG=$MIGCAGE_CONFIG\"]"
  cat > "$work/bundle/config.json" <<JSON
{"ociVersion": "1.0.2",
 "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/", "env": [$env],
   "args": ["sh", "-c", "$3"], "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]},
 "root": {"path": "rootfs"},
 "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
   {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]}],
 "hooks": {"prestart": [{"path": "$migcage", "args": ["migcage", "hook", "prestart"], "env": $hookenv}]},
 "linux": {"resources": {"devices": [{"allow": false, "access": "rwm"}]},
   "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}, {"type": "network"}]}}
JSON
  "$runc" run --bundle "$work/bundle" "migcage-hw-$1-$$" > "$work/$1.out" 2>&1
}
if run_container gpu0 0 "ls /dev/nvidia*; nvidia-smi -L"; then
  block "$work/gpu0.out"
  if grep -q '^GPU 0:' "$work/gpu0.out"; then pass "container with NVIDIA_VISIBLE_DEVICES=0 runs nvidia-smi -L"; else fail "container nvidia-smi -L" "no GPU 0 line"; fi
else
  fail "container with NVIDIA_VISIBLE_DEVICES=0" "$(tail -n 1 "$work/gpu0.out")"; block "$work/gpu0.out"
fi
if run_container nogpu "" "ls /dev; ls /dev/nvidia* 2>/dev/null && echo HAS-GPU-NODE; true"; then
  if grep -q HAS-GPU-NODE "$work/nogpu.out"; then fail "container without a request" "it sees a GPU node"; else pass "container without a request sees no GPU node"; fi
else
  fail "container without a request" "$(tail -n 1 "$work/nogpu.out")"
fi

log ""
log "failures: $fails"
[ -n "$out" ] && cp "$report" "$out"
exit "$fails"
