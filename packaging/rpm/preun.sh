# migcage %preun: on erase (not upgrade), disable the unit.
if [ "$1" -eq 0 ]; then
    systemctl --no-reload disable --now migcage-cdi.path migcage-cdi.service >/dev/null 2>&1 || :
fi
