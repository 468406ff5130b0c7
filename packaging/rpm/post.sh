# migcage %post: the links cargo-generate-rpm cannot package, and the unit's preset.
ln -sf migcage /usr/bin/migcage-runtime
mkdir -p /usr/lib/migcage/bin
ln -sf ../../../bin/migcage /usr/lib/migcage/bin/nvidia-container-runtime-hook
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    systemctl --no-reload preset migcage-cdi.service migcage-cdi.path >/dev/null 2>&1 || :
fi
