#!/usr/bin/env bash
# The main job on the built-in simulated GPU: an A100 split into seven 1g.5gb MIG instances, and
# a real runc container that asks for one of them through migcage's OCI hook. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --workspace --quiet
bin="$PWD/target/debug/migcage"
demo="${MIGCAGE_DEMO_DIR:-/tmp/migcage-demo}"
mkdir -p "$demo"
host="$demo/host" bundle="$demo/bundle"

echo "== 1. a simulated MIG host (device nodes, driver procfs, libraries, simulated NVML)"
"$bin" simulate --topology a100-7x1g --root "$host"
export MIGCAGE_CONFIG="$host/config.toml"

echo; echo "== 2. what migcage sees on it: migcage list"
"$bin" list

echo; echo "== 3. a busybox container that asks for MIG device 0:1 (NVIDIA_VISIBLE_DEVICES=0:1)"
rm -rf "$bundle"; mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs/hostdev"
cp "$(command -v busybox)" "$bundle/rootfs/bin/busybox"
for a in sh ls cat stat; do ln -sf busybox "$bundle/rootfs/bin/$a"; done
other="$(ls "$host/dev/nvidia-caps" | sort -V | tail -n 1)"
cat > "$bundle/config.json" <<JSON
{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/",
    "env": ["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=0:1"],
    "args": ["sh", "-c", "echo '-- inside: GPU nodes'; ls -ld /dev/nvidia*; ls -l /dev/nvidia-caps; echo '-- inside: /proc/driver/nvidia/gpus'; ls /proc/driver/nvidia/gpus; echo '-- inside: open my caps node (ENXIO = allowed, no real driver behind it)'; cat /dev/nvidia-caps/* 2>&1 | head -n 1; echo '-- inside: open another instance s caps node (EPERM = refused by the cgroup)'; cat /hostdev/nvidia-caps/$other 2>&1; true"],
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
  },
  "root": {"path": "rootfs"},
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
    {"destination": "/hostdev", "type": "bind", "source": "$host/dev", "options": ["rbind", "ro"]}
  ],
  "hooks": {"prestart": [{"path": "$bin", "args": ["migcage", "hook", "prestart"], "env": ["MIGCAGE_CONFIG=$MIGCAGE_CONFIG"]}]},
  "linux": {
    "resources": {"devices": [{"allow": false, "access": "rwm"}]},
    "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}, {"type": "network"}]
  }
}
JSON
echo "-- migcage explain --bundle $bundle"
"$bin" explain --bundle "$bundle"
echo "-- runc run"
runc run --bundle "$bundle" "migcage-demo-$$"
