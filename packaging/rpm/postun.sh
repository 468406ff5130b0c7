# migcage %postun: on erase (not upgrade), remove the links %post made and what migcage made
# while it ran (the log, the state, the boot-time CDI spec if still migcage's).
if [ "$1" -eq 0 ]; then
    rm -f /usr/bin/migcage-runtime /usr/lib/migcage/bin/nvidia-container-runtime-hook
    rmdir /usr/lib/migcage/bin /usr/lib/migcage 2>/dev/null || :
    rm -f /var/log/migcage.log /var/log/migcage.log.[0-9]*
    rm -rf /run/migcage
    spec=/var/run/cdi/nvidia.com-gpu.yaml
    if [ -f "$spec" ] && grep -q "migcage" "$spec"; then
        rm -f "$spec"
        rmdir /var/run/cdi 2>/dev/null || :
    fi
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
