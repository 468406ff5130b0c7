#!/usr/bin/env bash
# Boot the test VM once with SHARE_DIR as its 9p share: the guest's runner waits for systemd to
# finish booting, runs SHARE_DIR/run.sh as root, writes SHARE_DIR/output.log and
# SHARE_DIR/exit-code and powers off. Exits with run.sh's exit code; a VM that does not boot or
# does not finish within MIGCAGE_VM_TIMEOUT seconds (default 1500) is a failure that prints the
# console log's tail. The image comes from image.sh (built on first use, then cached).
#
# MIGCAGE_VM_SHARES (absolute directories, space separated) are shared too, each for the guest to
# mount at the same path: their tags and paths are listed in SHARE_DIR/extra-shares, one
# "TAG PATH" a line (tests/vm.rs shares the repository and the target directory that way, so
# that test binaries built here run there unchanged).
#
# KVM is not usable on these machines (/dev/kvm is PVM: a stock kernel hangs), so this is QEMU's
# software emulation (TCG): slow but real. The disk is a snapshot: a run never changes the image.
set -euo pipefail
die() { echo "vm run: $*" >&2; exit 1; }
(($# == 1)) || die "usage: run.sh SHARE_DIR"
share=$(cd "$1" 2>/dev/null && pwd) || die "no share directory $1"
[[ -f $share/run.sh ]] || die "$share/run.sh does not exist"
timeout_s=${MIGCAGE_VM_TIMEOUT:-1500}
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is not installed (scripts/deps.sh installs qemu-system-x86)"
here=$(cd "$(dirname "$0")" && pwd)
start=$(date +%s)
image=$("$here/image.sh")
rm -f "$share/exit-code" "$share/output.log" "$share/boot.txt"
extra=()
: >"$share/extra-shares"
n=0
for dir in ${MIGCAGE_VM_SHARES:-}; do
  [[ $dir == /* && -d $dir ]] || die "MIGCAGE_VM_SHARES: $dir is not an absolute directory"
  extra+=(-virtfs "local,path=$dir,mount_tag=extra$n,security_model=passthrough,id=extra$n")
  echo "extra$n $dir" >>"$share/extra-shares"
  n=$((n + 1))
done
console=$(mktemp -t migcage-vm-console.XXXXXX)
trap 'rm -f "$console"' EXIT
booted=$(date +%s)
set +e
timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 \
  -machine q35 -cpu max -m 2G -smp 2 -nographic -no-reboot \
  -kernel "$image/vmlinuz" -initrd "$image/initrd.img" -append "$(cat "$image/cmdline")" \
  -drive "file=$image/disk.img,format=raw,if=virtio,snapshot=on" \
  -virtfs "local,path=$share,mount_tag=share,security_model=passthrough,id=share" "${extra[@]}" \
  -nic none </dev/null >"$console" 2>&1
qrc=$?
set -e
end=$(date +%s)
cp "$console" "$share/console.log"
fail() {
  echo "vm run: $* (console log's last 40 lines follow; all of it in $share/console.log)" >&2
  tail -n 40 "$console" | tr -d '\r' >&2
  exit 1
}
if [[ ! -f $share/boot.txt ]]; then
  ((qrc != 124 && qrc != 137)) || fail "the VM did not boot within ${timeout_s} s"
  fail "the VM did not boot (qemu exit $qrc)"
fi
((qrc != 124 && qrc != 137)) || fail "run.sh did not finish within ${timeout_s} s"
[[ -f $share/exit-code ]] || fail "the VM stopped (qemu exit $qrc) before run.sh finished"
rc=$(cat "$share/exit-code")
echo "vm run: boot $(sed -n 's/^Startup finished in //p' "$share/boot.txt" 2>/dev/null | head -n 1)" >&2
echo "vm run: $(head -n 1 "$share/boot.txt" 2>/dev/null); run.sh exited $rc; VM $((end - booted)) s, total $((end - start)) s (image included)" >&2
[[ $rc =~ ^[0-9]+$ ]] || die "bad exit code in the share: $rc"
exit "$rc"
