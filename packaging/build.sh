#!/usr/bin/env bash
# Build migcage's packages: OUT/migcage.deb (cargo-deb) and OUT/migcage.rpm (cargo-generate-rpm),
# OUT being $1 or target/packages. A release build of migcage and the simulated NVML, then the
# man pages and shell completions from the binary itself (migcage generate), then both packages
# from Cargo.toml's [package.metadata.deb] and [package.metadata.generate-rpm]. Installs cargo-deb
# and cargo-generate-rpm with `cargo install --locked` when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
out="${1:-$repo/target/packages}"
target="${CARGO_TARGET_DIR:-$repo/target}"
rel="$target/release"
say() { echo "packaging: $*"; }

for tool in deb:cargo-deb generate-rpm:cargo-generate-rpm; do
  sub=${tool%%:*} crate=${tool#*:}
  if ! cargo "$sub" --version >/dev/null 2>&1; then
    say "installing $crate (cargo install --locked)"
    start=$SECONDS
    env -u CARGO_TARGET_DIR cargo install "$crate" --locked --quiet
    say "$crate installed in $((SECONDS - start)) s"
  fi
done

start=$SECONDS
cargo build --release --quiet -p migcage -p nvml-sim
say "release build in $((SECONDS - start)) s"
gen="$rel/generated"
rm -rf "$gen"
mkdir -p "$gen/man" "$gen/completions" "$out"
"$rel/migcage" generate man "$gen/man"
gzip -9n "$gen"/man/*.1
"$rel/migcage" generate completions bash >"$gen/completions/migcage.bash"
"$rel/migcage" generate completions zsh >"$gen/completions/_migcage"
"$rel/migcage" generate completions fish >"$gen/completions/migcage.fish"

start=$SECONDS
cargo deb --no-build --quiet -p migcage --output "$out/migcage.deb" >/dev/null
say "$out/migcage.deb ($(du -h "$out/migcage.deb" | cut -f1), cargo deb in $((SECONDS - start)) s)"
start=$SECONDS
cargo generate-rpm --output "$out/migcage.rpm" >/dev/null
say "$out/migcage.rpm ($(du -h "$out/migcage.rpm" | cut -f1), cargo generate-rpm in $((SECONDS - start)) s)"
