#!/usr/bin/env bash
# Newer containerd releases for tests/cri_e2e.rs: Debian 12 has only containerd 1.6, whose CRI
# plugin has no CDI and reads no config version 3. This fetches the containerd package of
# Debian 13 (trixie: 1.7) and of unstable (sid: 2.x) with apt, from the mirror that this
# machine's own Debian sources name, through a sources list of its own (the machine's apt sources
# and its package set are never changed), and unpacks it, not installed, into
# $MIGCAGE_CONTAINERD_RELEASES/<suite>/ (default /var/cache/migcage-containerd). Idempotent: a
# suite already unpacked is left as it is. Run by scripts/deps.sh.
set -euo pipefail
dest=${MIGCAGE_CONTAINERD_RELEASES:-/var/cache/migcage-containerd}
todo=()
for suite in trixie sid; do
  [ -x "$dest/$suite/usr/bin/containerd" ] || todo+=("$suite")
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
  echo "containerd-releases: no Debian archive in /etc/apt's sources to fetch containerd ${todo[*]} from" >&2
  exit 1
fi
work=$(mktemp -d -t migcage-containerd.XXXXXX)
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
echo "containerd-releases: fetching containerd from ${todo[*]} into $dest"
apt-get "${apt_opts[@]}" update
mkdir -p "$dest"
for suite in "${todo[@]}"; do
  (cd "$work/debs" && apt-get "${apt_opts[@]}" download "containerd/$suite")
  deb=$(ls "$work"/debs/containerd_*.deb)
  rm -rf "$dest/$suite.new"
  dpkg-deb -x "$deb" "$dest/$suite.new"
  rm -rf "$dest/$suite" "$deb"
  mv "$dest/$suite.new" "$dest/$suite"
  echo "containerd-releases: $suite: $("$dest/$suite/usr/bin/containerd" --version)"
done
