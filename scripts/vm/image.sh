#!/usr/bin/env bash
# Build (or reuse) the throw-away test VM's image: Debian 12 with systemd as PID 1 on pure
# cgroup v2, its own kernel (linux-image-amd64, 6.1) and a small busybox initrd, runc, crun,
# Podman and Docker. Prints the image directory (disk.img, vmlinuz, initrd.img, cmdline).
#
# The image is cached under $MIGCAGE_VM_CACHE (default /var/cache/migcage-vm), keyed by a hash
# of its recipe (this script and scripts/vm/guest/*): a matching key is never rebuilt. The .debs
# are cached there too (debootstrap --cache-dir), so a rebuild after a recipe change downloads
# nothing new. Run as root on Debian (debootstrap, mkfs.ext4 -d: no loop devices, no mounts but
# debootstrap's own in the target, which it removes and so does the trap below).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${MIGCAGE_VM_CACHE:-/var/cache/migcage-vm}
mirror=${MIGCAGE_VM_MIRROR:-http://deb.debian.org/debian}
die() { echo "vm image: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "needs root (debootstrap)"

# What the scenarios need in the guest (debootstrap resolves no virtual packages: name them).
packages=(systemd systemd-sysv dbus udev kmod runc crun busybox-static procps util-linux bpftool
  podman netavark docker.io uidmap libpam-systemd dbus-user-session jq ca-certificates iproute2)
# The kernel arguments: docker needs apparmor=0 (Debian's kernel enables AppArmor and the image
# has no apparmor_parser); pure cgroup v2.
cmdline="console=ttyS0 root=/dev/vda rw apparmor=0 systemd.unified_cgroup_hierarchy=1 panic=-1 quiet loglevel=4 systemd.show_status=0"
# Modules the initrd loads before it can mount the root (the rest come from the root itself).
initrd_modules=(virtio_pci virtio_blk ext4)

key=$( { cat "$0"; for f in "$here"/guest/*; do echo "== ${f##*/}"; cat "$f"; done; } | sha256sum | cut -c1-16)
out=$cache/image-$key
if [[ -f $out/ready ]]; then
  echo "vm image: cached $out" >&2
  echo "$out"
  exit 0
fi

for cmd in debootstrap mkfs.ext4 apt-get apt-cache dpkg-deb gzip; do
  command -v "$cmd" >/dev/null || die "$cmd is not installed (scripts/deps.sh installs it)"
done
mkdir -p "$cache/debs" "$cache/kernel-debs"
work=$(mktemp -d "$cache/build.XXXXXX")
root=$work/root
cleanup() {
  # debootstrap mounts proc and sys in the target; make sure none stays on failure.
  local m
  awk -v r="$root" 'index($5, r) == 1 {print $5}' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
start=$(date +%s)
echo "vm image: building $out (debootstrap bookworm, cache $cache/debs)" >&2

include=$(IFS=,; echo "${packages[*]}")
if ! debootstrap --variant=minbase --include="$include" --cache-dir="$cache/debs" \
  bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
  tail -n 30 "$work/debootstrap.log" >&2
  die "debootstrap failed (log above)"
fi

# The kernel: the .deb of linux-image-amd64's current dependency, unpacked (its postinst would
# run initramfs-tools, which takes minutes: the initrd is our own below).
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[[ -n $kpkg ]] || die "apt-cache does not know linux-image-amd64 (run apt-get update)"
deb=$(find "$cache/kernel-debs" -name "${kpkg}_*.deb" | sort | tail -n 1)
if [[ -z $deb ]]; then
  (cd "$cache/kernel-debs" && apt-get -o APT::Sandbox::User=root download -q "$kpkg" >/dev/null) || die "apt-get download $kpkg failed"
  deb=$(find "$cache/kernel-debs" -name "${kpkg}_*.deb" | sort | tail -n 1)
fi
# --keep-directory-symlink: the root is merged-/usr (lib -> usr/lib); plain dpkg-deb -x would
# replace that link with a directory holding only the modules.
dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C "$root"
kver=${kpkg#linux-image-}
[[ -n $kver && -f $root/boot/vmlinuz-$kver ]] || die "no kernel in $deb"
# The guest's own kmod (the host needs none).
chroot "$root" /sbin/depmod "$kver"

# The guest's configuration.
echo migcage-vm >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 migcage-vm\n' >"$root/etc/hosts"
# A fixed machine id: no first-boot setup (systemd-firstboot would prompt on the console).
echo 4d696763616765564d00000000000001 >"$root/etc/machine-id"
: >"$root/etc/fstab"
mkdir -p "$root/etc/docker" "$root/mnt/share" "$root/usr/local/sbin"
install -m 0644 "$here/guest/daemon.json" "$root/etc/docker/daemon.json"
install -m 0755 "$here/guest/migcage-vm-runner" "$root/usr/local/sbin/migcage-vm-runner"
install -m 0644 "$here/guest/migcage-vm-runner.service" "$root/etc/systemd/system/migcage-vm-runner.service"
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/migcage-vm-runner.service "$root/etc/systemd/system/multi-user.target.wants/migcage-vm-runner.service"
# Nothing waits on a network or a login prompt; the runner powers off.
for unit in getty@tty1.service serial-getty@ttyS0.service systemd-networkd-wait-online.service \
  apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer systemd-timesyncd.service; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root/boot"/initrd* || true

# The initrd: the guest's static busybox, the modules the root disk needs, /init.
ird=$work/initrd
mkdir -p "$ird/bin" "$ird/modules"
cp "$root/bin/busybox" "$ird/bin/busybox"
install -m 0755 "$here/guest/init" "$ird/init"
: >"$ird/modules/order"
while read -r verb path _; do
  [[ $verb == insmod ]] || continue
  name=${path##*/}
  path=$root$path
  case $name in
    *.xz) xz -dc "$path" >"$ird/modules/${name%.xz}"; name=${name%.xz} ;;
    *.zst) zstd -qdc "$path" >"$ird/modules/${name%.zst}"; name=${name%.zst} ;;
    *) cp "$path" "$ird/modules/$name" ;;
  esac
  grep -qx "$name" "$ird/modules/order" || echo "$name" >>"$ird/modules/order"
done < <(for m in "${initrd_modules[@]}"; do chroot "$root" /sbin/modprobe -S "$kver" --show-depends "$m"; done)
mkdir -p "$work/out"
(cd "$ird" && find . | "$root/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1) >"$work/out/initrd.img"
cp "$root/boot/vmlinuz-$kver" "$work/out/vmlinuz"
echo "$cmdline" >"$work/out/cmdline"
echo "$kver" >"$work/out/kernel-version"

# The disk: ext4 made from the tree (no loop device), 4 GiB sparse.
mkfs.ext4 -q -F -L migcage-vm -d "$root" "$work/out/disk.img" 4G >/dev/null
touch "$work/out/ready"
rm -rf "$out"
mv "$work/out" "$out"
# An image is about 1 GB on a shared disk: keep this one and the newest other (another branch's
# recipe), drop the rest.
find "$cache" -maxdepth 1 -name 'image-*' -type d ! -path "$out" -printf '%T@ %p\n' | sort -rn |
  tail -n +2 | cut -d' ' -f2- | while read -r old; do rm -rf "$old"; done
echo "vm image: built $out in $(($(date +%s) - start)) s (kernel $kver)" >&2
echo "$out"
