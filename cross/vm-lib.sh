# shellcheck shell=bash
# Sourced by cross/vm-test.sh (the Pi bundle on an emulated arm64 machine) and scripts/sd-card.sh
# (the appliance on a delayed disk in an amd64 guest): the plumbing both guests share. Each
# script builds its own Debian image; these write the parts that are the same.

# unmount_under DIR: every mount below DIR, deepest first; lazily, so a busy mount cannot keep a
# later rm -rf from being safe.
unmount_under() {
    local m
    for m in $(awk -v d="$1" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
}

# The Debian mirror this machine's apt uses (deb822 .sources or one-line .list), one per line.
apt_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk 'BEGIN { RS = "" } !/security/ && /Suites:/ && match($0, /URIs:[ \t]*[^ \t\n]+/) {
                 s = substr($0, RSTART, RLENGTH); sub(/URIs:[ \t]*/, "", s)
                 if (s ~ /debian/) { print s; exit } }' "$f"
    done
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        sed -n -E 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]]+[a-z]+[[:space:]].*/\2/p' |
        grep -v security | grep debian || true
}

# write_vm_runner ROOTFS WHO [SERVICE_LINE...]: the guest's runner, a unit that at boot mounts the
# host's 9p share on /host, runs /host/run.sh (output in /host/guest.log, exit status in
# /host/rc) and powers the machine off. It runs whatever run.sh the host wrote, so changing a
# test never rebuilds the image. WHO names the script that installs it; SERVICE_LINEs are added
# to the unit's [Service] section.
write_vm_runner() {
    local r="$1" who="$2" line
    shift 2
    mkdir -p "$r/usr/local/sbin" "$r/etc/systemd/system"
    cat >"$r/usr/local/sbin/vm-runner" <<EOF
#!/bin/sh
# Mounts the host's 9p share on /host, runs /host/run.sh (output in /host/guest.log, exit status
# in /host/rc), then powers the machine off. Installed by $who.
EOF
    cat >>"$r/usr/local/sbin/vm-runner" <<'EOF'
modprobe -q 9pnet_virtio; modprobe -q 9p
mkdir -p /host
i=0
until mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 host /host; do
    i=$((i + 1)); [ "$i" -lt 30 ] || { echo "vm-runner: no 9p share"; systemctl poweroff --no-block; exit 1; }
    sleep 1
done
if [ -x /host/run.sh ]; then
    /host/run.sh >/host/guest.log 2>&1
    echo "$?" >/host/rc
fi
sync
umount /host || true
systemctl poweroff --no-block
EOF
    chmod 0755 "$r/usr/local/sbin/vm-runner"
    {
        printf '[Unit]\nDescription=%s runner (/host/run.sh from the 9p share)\nAfter=multi-user.target\n\n' "$who"
        printf '[Service]\nType=oneshot\nExecStart=/usr/local/sbin/vm-runner\nTimeoutStartSec=infinity\n'
        printf 'StandardOutput=journal+console\n'
        for line in "$@"; do printf '%s\n' "$line"; done
        printf '\n[Install]\nWantedBy=multi-user.target\n'
    } >"$r/etc/systemd/system/vm-runner.service"
}

# stop_qemu PID: SIGTERM, up to 5 s, then SIGKILL; reaped.
stop_qemu() {
    kill -0 "$1" 2>/dev/null || return 0
    kill -TERM "$1" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$1" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
