#!/usr/bin/env bash
# Newer engine releases for the tests: Debian 12 has only containerd 1.6, whose CRI plugin has no
# CDI and reads no config version 3, and Docker 20.10, which has no CDI. This fetches Debian 13's
# (trixie) containerd 1.7 and Docker 26 (docker.io, docker-cli) and unstable's (sid) containerd
# 2.x with apt, from the mirror that this machine's own Debian sources name, through a sources
# list of its own (the machine's apt sources and its package set are never changed), and unpacks
# them, not installed, into $MIGCAGE_ENGINE_RELEASES/<suite>/ (default
# /var/cache/migcage-engines): tests/cri_e2e.rs and tests/docker_e2e.rs run them from there.
# Idempotent: a suite whose programs are all there is left as it is. Run by scripts/deps.sh.
set -euo pipefail
dest=${MIGCAGE_ENGINE_RELEASES:-/var/cache/migcage-engines}
declare -A packages=([trixie]="containerd docker.io docker-cli" [sid]="containerd")
declare -A programs=([trixie]="usr/bin/containerd usr/sbin/dockerd usr/bin/docker" [sid]="usr/bin/containerd")
todo=()
for suite in trixie sid; do
  for p in ${programs[$suite]}; do
    if [ ! -x "$dest/$suite/$p" ]; then
      todo+=("$suite")
      break
    fi
  done
done
((${#todo[@]})) || exit 0
# The first Debian archive (not -security) in the machine's sources, deb822 or one-line style.
mirror=$(
  {
    grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
    grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
      sed -E 's/^deb +(\[[^]]*\] +)?//' | awk '{print $1}'
  } | grep -v -- '-security' | grep '/debian/*$' | head -n1
) || true
if [ -z "$mirror" ]; then
  echo "engine-releases: no Debian archive in /etc/apt's sources to fetch engines of ${todo[*]} from" >&2
  exit 1
fi
work=$(mktemp -d -t migcage-engines.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
for suite in "${todo[@]}"; do
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main"
done >"$work/sources.list"
apt_opts=(
  -o "Dir::Etc::sourcelist=$work/sources.list" -o "Dir::Etc::sourceparts=$work/none"
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
  -o APT::Sandbox::User=root -qq
)
echo "engine-releases: fetching ${todo[*]} engines into $dest"
apt-get "${apt_opts[@]}" update
mkdir -p "$dest"
for suite in "${todo[@]}"; do
  rm -rf "$dest/$suite.new" "$work"/debs/*.deb
  for pkg in ${packages[$suite]}; do
    (cd "$work/debs" && apt-get "${apt_opts[@]}" download "$pkg/$suite")
  done
  for deb in "$work"/debs/*.deb; do
    dpkg-deb -x "$deb" "$dest/$suite.new"
  done
  rm -rf "$dest/$suite"
  mv "$dest/$suite.new" "$dest/$suite"
  for p in ${programs[$suite]}; do
    echo "engine-releases: $suite: $("$dest/$suite/$p" --version | head -n1)"
  done
done
