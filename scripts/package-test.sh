#!/usr/bin/env bash
# Build migcage's .deb (cargo-deb) and .rpm (cargo-generate-rpm); install the .deb with dpkg on
# this machine; smoke-test the installed binary against a simulated GPU (simulate, list, doctor,
# a runc container through the installed hook link, one through the migcage-runtime link, the
# systemd unit's command); purge it and check that nothing is left but what the admin changed.
# Inspect the .rpm with rpm -qlp. Run as root on Debian 12; scripts/test.sh runs it last (the
# installed hooks.d file would act on the podman tests' containers).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "package-test: $*"; }
fail() {
  echo "package-test: FAIL: $*" >&2
  exit 1
}
if [ "$(id -u)" != 0 ]; then
  echo "SKIP package-test: needs root (dpkg -i, mknod for the simulated GPU, runc)"
  exit 0
fi
work="$(mktemp -d /tmp/migcage-package-test.XXXXXX)"
installed=0
cleanup() {
  if [ "$installed" = 1 ]; then
    say "cleaning up: dpkg --purge migcage"
    dpkg --purge migcage >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# dpkg, waiting for a lock that apt or another dpkg holds (scripts/deps.sh may run alongside).
dpkg_wait() {
  local out i
  for i in $(seq 1 90); do
    if out=$(dpkg "$@" 2>&1); then
      [ -z "$out" ] || echo "$out"
      return 0
    fi
    if grep -q "lock" <<<"$out"; then
      sleep 2
      continue
    fi
    echo "$out" >&2
    return 1
  done
  fail "the dpkg lock stayed held for 3 minutes"
}

# -- build ---------------------------------------------------------------------------------------
command -v rpm >/dev/null || fail "rpm is not installed (scripts/deps.sh installs Debian's rpm)"
packaging/build.sh "$work"
deb="$work/migcage.deb"
rpmfile="$work/migcage.rpm"

# -- what the packages hold ---------------------------------------------------------------------
# Every file both packages carry, as installed (the two links come from cargo-deb's symlink
# assets, and from the .rpm's %post).
files=(
  /usr/bin/migcage
  /etc/migcage/config.toml
  /etc/logrotate.d/migcage
  /usr/share/containers/oci/hooks.d/oci-migcage-hook.json
  /usr/lib/udev/rules.d/71-migcage-dev-char.rules
  /usr/share/man/man1/migcage.1.gz
  /usr/share/man/man1/migcage-doctor.1.gz
  /usr/share/man/man1/migcage-cdi.1.gz
  /usr/share/bash-completion/completions/migcage
  /usr/share/fish/vendor_completions.d/migcage.fish
  /usr/lib/migcage/libnvidia_ml_sim.so
  /usr/lib/migcage/nvidia-smi
  /usr/share/doc/migcage/README.md
  /usr/share/doc/migcage/docs/usage.md
  /usr/share/doc/migcage/docs/configuration.md
)
links=(/usr/bin/migcage-runtime /usr/lib/migcage/bin/nvidia-container-runtime-hook)
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\.||' >"$work/deb.list"
for f in "${files[@]}" "${links[@]}" /usr/share/zsh/vendor-completions/_migcage; do
  grep -qx "$f" "$work/deb.list" || fail ".deb lacks $f (dpkg-deb -c: $(tr '\n' ' ' <"$work/deb.list"))"
done
unit=$(grep -E '/systemd/system/migcage-cdi\.service$' "$work/deb.list") || fail ".deb lacks migcage-cdi.service"
path_unit=$(grep -E '/systemd/system/migcage-cdi\.path$' "$work/deb.list") || fail ".deb lacks migcage-cdi.path"
grep -q "nvidia-container-runtime-hook" <(grep -v '^/usr/lib/migcage/bin/' "$work/deb.list") &&
  fail ".deb ships nvidia-container-runtime-hook outside /usr/lib/migcage/bin (NVIDIA's package owns /usr/bin's)"
dpkg-deb -e "$deb" "$work/control"
for c in /etc/migcage/config.toml /etc/logrotate.d/migcage; do
  grep -qx "$c" "$work/control/conffiles" || fail "$c is not a conffile ($(cat "$work/control/conffiles"))"
done
say ".deb holds $(wc -l <"$work/deb.list") entries; conffiles: $(tr '\n' ' ' <"$work/control/conffiles")"

rpm -qlp "$rpmfile" 2>/dev/null >"$work/rpm.list"
for f in "${files[@]}" /usr/lib/systemd/system/migcage-cdi.service /usr/lib/systemd/system/migcage-cdi.path /usr/share/zsh/site-functions/_migcage; do
  grep -qx "$f" "$work/rpm.list" || fail ".rpm lacks $f (rpm -qlp: $(tr '\n' ' ' <"$work/rpm.list"))"
done
rpm -qcp "$rpmfile" 2>/dev/null >"$work/rpm.conf"
for c in /etc/migcage/config.toml /etc/logrotate.d/migcage; do
  grep -qx "$c" "$work/rpm.conf" || fail ".rpm does not mark $c as a config file"
done
rpm -qp --scripts "$rpmfile" 2>/dev/null | grep -q "ln -sf migcage /usr/bin/migcage-runtime" ||
  fail ".rpm's %post does not make the migcage-runtime link"
say ".rpm holds $(wc -l <"$work/rpm.list") files (rpm -qlp), config: $(tr '\n' ' ' <"$work/rpm.conf")"

# -- install --------------------------------------------------------------------------------------
if dpkg-query -W -f='${Status}' migcage 2>/dev/null | grep -qv "not-installed"; then
  fail "a migcage package is already on this machine ($(dpkg-query -W -f='${Status}' migcage)); this test installs and purges its own: remove it first"
fi
# Paths purge must remove: the package's files, and what migcage makes at run time.
made=(/var/log/migcage.log /var/run/cdi/nvidia.com-gpu.yaml /var/run/cdi /etc/systemd/system/multi-user.target.wants/migcage-cdi.service /etc/systemd/system/multi-user.target.wants/migcage-cdi.path)
declare -A before
for p in "${files[@]}" "${links[@]}" "$unit" "${made[@]}" /etc/migcage /usr/lib/migcage; do
  before[$p]=$([ -e "$p" ] || [ -L "$p" ] && echo yes || echo no)
done
start=$SECONDS
dpkg_wait -i "$deb" >/dev/null
installed=1
say "dpkg -i in $((SECONDS - start)) s"

# -- the installed binary on a simulated GPU -----------------------------------------------------
[ "$(command -v migcage)" = /usr/bin/migcage ] || fail "migcage on PATH is $(command -v migcage), not /usr/bin/migcage"
/usr/bin/migcage --version
# The shipped config documents the defaults and sets none of them.
diff <(/usr/bin/migcage config) <(/usr/bin/migcage --config /dev/null config) ||
  fail "/etc/migcage/config.toml changes a default"
zcat /usr/share/man/man1/migcage-doctor.1.gz | grep -q '^\.TH migcage-doctor' || fail "migcage-doctor.1 is not a man page"
bash -c 'source /usr/share/bash-completion/completions/migcage && complete -p migcage' >/dev/null ||
  fail "the bash completion does not register"

sim="$work/sim"
/usr/bin/migcage simulate --topology a100-7x1g --root "$sim"
cfg="$sim/config.toml"
/usr/bin/migcage --config "$cfg" list
/usr/bin/migcage --config "$cfg" doctor || fail "migcage doctor found a FAIL on the simulated host"

busybox=$(command -v busybox) || fail "busybox is not installed (scripts/deps.sh)"
# A busybox bundle asking for MIG device $2 that lists its GPU nodes; $3: the prestart hook
# (JSON) or nothing.
bundle() {
  local dir=$1 dev=$2 hooks=$3
  mkdir -p "$dir/rootfs/bin"
  cp "$busybox" "$dir/rootfs/bin/busybox"
  for a in sh ls; do ln -sf busybox "$dir/rootfs/bin/$a"; done
  cat >"$dir/config.json" <<JSON
{
  "ociVersion": "1.0.2",
  "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/",
    "env": ["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=$dev"],
    "args": ["sh", "-c", "ls /dev/nvidia-caps | sed 's/^/CAP /'; ls /proc/driver/nvidia/gpus | sed 's/^/GPU /'"],
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]},
  "root": {"path": "rootfs"},
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]}
  ],
  $hooks
  "linux": {"resources": {"devices": [{"allow": false, "access": "rwm"}]},
    "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}, {"type": "network"}]}
}
JSON
}
caps_of() { grep -c '^CAP nvidia-cap' <<<"$1" || true; }

# docker run --gpus's name for the hook: the link in /usr/lib/migcage/bin.
bundle "$work/b1" 0:1 "\"hooks\": {\"prestart\": [{\"path\": \"/usr/lib/migcage/bin/nvidia-container-runtime-hook\", \"args\": [\"nvidia-container-runtime-hook\", \"prestart\"], \"env\": [\"MIGCAGE_CONFIG=$cfg\"]}]},"
id1="migcage-pkg-hook-$$"
out=$(runc run --bundle "$work/b1" "$id1" 2>&1) || fail "runc with the installed hook: $out"
echo "$out"
[ "$(caps_of "$out")" = 2 ] || fail "the container with the installed hook has $(caps_of "$out") caps nodes, not 2"
grep -q "\"container\":\"$id1\"" "$sim/migcage.log" || fail "no log record for $id1 in $sim/migcage.log"

# The runtime wrapper through its link, with no hook in the bundle.
bundle "$work/b2" 0:2 ""
id2="migcage-pkg-runtime-$$"
out=$(MIGCAGE_CONFIG=$cfg /usr/bin/migcage-runtime run --bundle "$work/b2" "$id2" 2>&1) ||
  fail "migcage-runtime run: $out"
echo "$out"
[ "$(caps_of "$out")" = 2 ] || fail "the container through migcage-runtime has $(caps_of "$out") caps nodes, not 2"

logrotate -d /etc/logrotate.d/migcage >"$work/logrotate.out" 2>&1 ||
  fail "logrotate rejects /etc/logrotate.d/migcage: $(cat "$work/logrotate.out")"
grep -qi "error" "$work/logrotate.out" && fail "logrotate -d: $(grep -i error "$work/logrotate.out")"

# The systemd unit: valid, enabled, and its command works (run here with the simulated config;
# it writes /var/run/cdi, which purge must clean).
command -v systemd-analyze >/dev/null && { systemd-analyze verify "$unit" "$path_unit" || fail "systemd-analyze verify $unit $path_unit"; }
[ -L /etc/systemd/system/multi-user.target.wants/migcage-cdi.service ] || fail "migcage-cdi.service is not enabled"
[ -L /etc/systemd/system/multi-user.target.wants/migcage-cdi.path ] || fail "migcage-cdi.path is not enabled"
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
MIGCAGE_CONFIG=$cfg $exec_start || fail "the unit's ExecStart ($exec_start) failed"
[ -f /var/run/cdi/nvidia.com-gpu.yaml ] || fail "the unit's command wrote no /var/run/cdi/nvidia.com-gpu.yaml"
/usr/bin/migcage --config "$cfg" cdi list --check >/dev/null || fail "the spec the unit wrote does not match the host"

# The hook with the shipped config: a container that asks for nothing; the log file appears.
mkdir -p "$work/b3"
echo '{"ociVersion":"1.0.2","process":{"env":["PATH=/bin"]},"root":{"path":"rootfs"}}' >"$work/b3/config.json"
echo "{\"id\":\"pkg-noop\",\"pid\":$$,\"bundle\":\"$work/b3\"}" | /usr/bin/migcage hook prestart ||
  fail "the installed hook failed on a container that asks for nothing"
[ -f /var/log/migcage.log ] || fail "the hook with the shipped config made no /var/log/migcage.log"

# -- what the admin changed survives purge; nothing else does ------------------------------------
echo "# changed by the admin" >>/etc/migcage/config.toml
echo "# the admin's own file" >/etc/migcage/site-notes.toml
start=$SECONDS
dpkg_wait --purge migcage >/dev/null
installed=0
say "dpkg --purge in $((SECONDS - start)) s"
left=()
for p in "${files[@]}" "${links[@]}" "$unit" "${made[@]}" /usr/lib/migcage; do
  if [ "${before[$p]}" = no ] && { [ -e "$p" ] || [ -L "$p" ]; }; then left+=("$p"); fi
done
((${#left[@]} == 0)) || fail "purge left ${left[*]}"
[ -f /etc/migcage/site-notes.toml ] || fail "purge removed the admin's own /etc/migcage/site-notes.toml"
[ "$(ls -A /etc/migcage)" = site-notes.toml ] || fail "purge left $(ls -A /etc/migcage | tr '\n' ' ') in /etc/migcage"
rm -f /etc/migcage/site-notes.toml
[ "${before[/etc/migcage]}" = yes ] || rmdir /etc/migcage
say "OK: built .deb and .rpm, installed, smoke-tested, purged clean"
