#!/usr/bin/env bash
# Tests the Raspberry Pi bundle (dist/tigerfans-VERSION-aarch64-linux.tar.gz) on a real aarch64
# Linux under systemd, as an operator installs it: qemu-user (cross/test-bundle.sh) has no
# io_uring and no systemd, so the replica, the units' hardening (seccomp filters, MemoryDeny-
# WriteExecute, LimitMEMLOCK) and install.sh can only be proven in a whole emulated machine.
#
#   1. Builds once, and caches in target/vm/, a Debian 12 arm64 machine: debootstrap (its second
#      stage in a chroot through qemu-aarch64-static, registered with binfmt_misc for the build
#      only), Debian's linux-image-arm64 and its initrd, an ext4 image made with mkfs.ext4 -d. The
#      cache is keyed by IMAGE_VERSION and a hash of the recipe; a changed recipe rebuilds it.
#   2. Boots it with qemu-system-aarch64 (TCG: -M virt -cpu max -smp 2) on a fresh copy-on-write
#      overlay of the pristine image, so no run sees another's state. The serial console goes to
#      a log. A unit in the image mounts a 9p share at boot, runs /host/run.sh (written below)
#      and powers off.
#   3. In the guest: the tarball is unpacked and checked and its install.sh run, then both units
#      must come up; a ticket is bought and paid; `systemctl restart tigerfans` keeps it; kill -9
#      of the replica is restarted by systemd and service resumes; install.sh run again restarts
#      nothing; a short `tigerfans bench`; `tigerfans audit` of the installed data, tigerfans stopped.
#   4. Prints the timings (image build, boot, replica format+start, purchase, recovery, run).
#
# Every wait is time-boxed (VM_TIMEOUT_S, default 1200, for the boot and the guest's run; a hung
# guest fails the test and qemu is killed). Settings: VM_KERNEL (4k: Debian's arm64 kernel; 16k:
# its arm64-16k kernel from bookworm-backports, 16 KiB pages like a Raspberry Pi 5's default
# kernel; make test-vm runs both), VM_MEM_MIB (4096), VM_TIMEOUT_S,
# VM_BUILD_TIMEOUT_S (1800), VM_MIRROR (default: the Debian mirror this machine's apt uses),
# VM_KEEP=1 keeps the run's disk overlay. Logs of the last run: target/vm/last-run/. Needs root
# (debootstrap, chroot, binfmt_misc); installs its Debian packages if they are missing.
# The last line is "N passed, M failed"; the exit status is non-zero on any failure.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

if [ "$(id -u)" -ne 0 ]; then
    echo "[vm-test] needs root (debootstrap, chroot, binfmt_misc): re-running with sudo" >&2
    exec sudo --preserve-env=VM_KERNEL,VM_MEM_MIB,VM_TIMEOUT_S,VM_BUILD_TIMEOUT_S,VM_MIRROR,VM_KEEP "$root/cross/vm-test.sh" "$@"
fi

IMAGE_VERSION=1                    # bump to rebuild every cached image
suite=bookworm
mem_mib="${VM_MEM_MIB:-4096}"
# Which of the image's kernels boots: Debian's arm64 (4 KiB pages) or arm64-16k (16 KiB pages,
# as the Raspberry Pi 5's default kernel).
case "${VM_KERNEL:-4k}" in
    4k) kernel_suffix="" page_bytes=4096 ;;
    16k) kernel_suffix="-16k" page_bytes=16384 ;;
    *) echo "VM_KERNEL must be 4k or 16k, not '$VM_KERNEL'" >&2; exit 2 ;;
esac
timeout_s="${VM_TIMEOUT_S:-1200}"
build_timeout_s="${VM_BUILD_TIMEOUT_S:-1800}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
name="tigerfans-$version-aarch64-linux"
vm_dir="$root/target/vm"
mkdir -p "$vm_dir"

. "$root/cross/vm-lib.sh"

now_ms() { date +%s%3N; }
secs() { awk -v ms="$1" 'BEGIN { printf "%.1f s", ms / 1000 }'; }
t_script=$(now_ms)

passed=0
failed=0
pass() { passed=$((passed + 1)); printf 'ok    %s\n' "$1"; }
fail() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$1"; }
# Only for what cannot continue: counts the failure, prints the summary and exits.
abort() {
    fail "$1"
    [ "$#" -lt 2 ] || tail -n "${3:-30}" "$2" 2>/dev/null | sed 's/^/      | /'
    echo "$passed passed, $failed failed"
    exit 1
}

# --- host tools (Debian packages) --------------------------------------------------------------
need=()
command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm)
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -x /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
if [ "${#need[@]}" -gt 0 ]; then
    echo "[vm-test] installing ${need[*]} (apt)" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# One run at a time: runs share the image cache (and would compete for the two cores anyway).
exec 9>"$vm_dir/lock"
flock -w 7200 9 || abort "another vm-test.sh holds $vm_dir/lock"

# --- cleanup: qemu always dies with this script; a half-built image never survives ----------
qemu_pid=""
build_dir=""
binfmt_added=0
run_dir=""
cleanup() {
    [ -z "$qemu_pid" ] || stop_qemu "$qemu_pid"
    if [ -n "$build_dir" ] && [ -d "$build_dir" ]; then
        unmount_under "$build_dir/"
        if awk -v d="$build_dir/" 'index($2, d) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
            echo "[vm-test] WARNING: mounts remain under $build_dir; not removing it" >&2
        else
            rm -rf --one-file-system "$build_dir"
        fi
    fi
    if [ "$binfmt_added" -eq 1 ] && [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        echo -1 >/proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null || true
    fi
    if [ -n "$run_dir" ] && [ "${VM_KEEP:-0}" != 1 ]; then rm -f "$run_dir/disk.qcow2"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# set -e stopping the script (an unexpected failure outside the checks) still ends with the summary.
on_error() {
    [ "$BASHPID" = "$$" ] || return 0
    fail "vm-test.sh stopped: '$2' failed (line $1, exit $3)"
    echo "$passed passed, $failed failed"
}
trap 'on_error "$LINENO" "$BASH_COMMAND" "$?"' ERR

tarball="dist/$name.tar.gz"
[ -s "$tarball" ] && [ -s "$tarball.sha256" ] || abort "$tarball (and .sha256) exist: run make dist"

# --- the image ---------------------------------------------------------------------------------

mirror="${VM_MIRROR:-$(apt_mirror | head -1)}"
mirror="${mirror:-http://deb.debian.org/debian}"

packages=systemd,systemd-sysv,udev,kmod,linux-image-arm64,initramfs-tools,curl,procps

# binfmt_misc: mounted if it is not, qemu-aarch64 registered with F (the interpreter is opened at
# registration, so nothing is copied into the chroot) unless something registered it already.
binfmt_register() {
    local b=/proc/sys/fs/binfmt_misc
    [ -e "$b/register" ] || mount -t binfmt_misc binfmt_misc "$b"
    if [ -e "$b/qemu-aarch64" ]; then
        echo 1 >"$b/qemu-aarch64"
        grep -q '^flags:.*F' "$b/qemu-aarch64" ||
            cp /usr/bin/qemu-aarch64-static "$1$(sed -n 's/^interpreter //p' "$b/qemu-aarch64")"
        return 0
    fi
    printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' \
        >"$b/register"
    binfmt_added=1
}

# Files of the guest, written between debootstrap's two stages (so that the initramfs the kernel's
# postinst makes already follows them). The runner is generic: it runs whatever /host/run.sh the
# host put in the 9p share, so changing the test never rebuilds the image.
configure_rootfs() {
    local r="$1"
    echo tigerfans-vm >"$r/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 tigerfans-vm\n::1 localhost ip6-localhost ip6-loopback\n' >"$r/etc/hosts"
    printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >"$r/etc/fstab"
    # A small initrd: only what finds and mounts the root (MODULES=most would pack every driver).
    mkdir -p "$r/etc/initramfs-tools/conf.d" "$r/etc/initramfs-tools/hooks"
    printf 'MODULES=list\nCOMPRESS=gzip\n' >"$r/etc/initramfs-tools/conf.d/vm.conf"
    cat >"$r/etc/initramfs-tools/hooks/vm-root" <<'EOF'
#!/bin/sh
# The root of the test VM: ext4 on virtio-blk (PCI).
[ "$1" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
for m in virtio_pci virtio_blk ext4 crc32c_generic; do force_load "$m"; done
EOF
    chmod 0755 "$r/etc/initramfs-tools/hooks/vm-root"
    mkdir -p "$r/etc/modules-load.d"
    printf '9p\n9pnet_virtio\n' >"$r/etc/modules-load.d/9p.conf"
    write_vm_runner "$r" cross/vm-test.sh
}

# In the chroot after the second stage: a machine id (so no boot is a "first boot"), no timers or
# first-boot prompts that would compete for the emulated CPUs, root without a password on the
# serial console (for debugging by hand), the runner enabled.
finish_rootfs() {
    chroot "$1" /bin/sh -ec '
        systemd-machine-id-setup >/dev/null
        passwd -d root >/dev/null
        systemctl enable vm-runner.service >/dev/null 2>&1
        systemctl mask systemd-firstboot.service apt-daily.timer apt-daily-upgrade.timer \
            e2scrub_all.timer fstrim.timer >/dev/null 2>&1
        ls /boot/initrd.img-* >/dev/null 2>&1 || update-initramfs -c -k all
        apt-get clean
        rm -rf /var/lib/apt/lists/* /var/log/*.log /debootstrap
    '
}

# The Raspberry Pi 5's default kernel uses 16 KiB pages; Debian has such a kernel for arm64 in
# bookworm-backports (linux-image-arm64-16k). Installed beside the 4 KiB one; VM_KERNEL=16k boots it.
add_16k_kernel() {
    local r="$1" m
    cp /etc/resolv.conf "$r/etc/resolv.conf"
    echo "deb $mirror $suite-backports main" >"$r/etc/apt/sources.list.d/backports.list"
    for m in proc sys dev; do mount --bind "/$m" "$r/$m"; done
    chroot "$r" /bin/sh -ec '
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t '"$suite"'-backports linux-image-arm64-16k
        apt-get clean
        rm -rf /var/lib/apt/lists/*
    '
    unmount_under "$r/"
    rm -f "$r/etc/resolv.conf"
}

# copy_kernel ROOTFS BUILD_DIR SUFFIX PATTERN: the newest kernel matching PATTERN and its initrd,
# as vmlinuz$SUFFIX, initrd$SUFFIX.img and kernel-version$SUFFIX.
copy_kernel() {
    local r="$1" out="$2" suffix="$3" kernel
    kernel="$(cd "$r/boot" && printf '%s\n' vmlinuz-* | grep -E "$4" | sort -V | tail -1)"
    kernel="${kernel#vmlinuz-}"
    [ -n "$kernel" ] && [ -s "$r/boot/initrd.img-$kernel" ] || abort "the rootfs has no kernel and initrd matching $4" "$out/debootstrap.log"
    cp "$r/boot/vmlinuz-$kernel" "$out/vmlinuz$suffix"
    cp "$r/boot/initrd.img-$kernel" "$out/initrd$suffix.img"
    echo "$kernel" >"$out/kernel-version$suffix"
}

build_image() {
    local dir="$1" r t0
    t0=$(now_ms)
    build_dir="$vm_dir/build.$$"
    r="$build_dir/rootfs"
    mkdir -p "$r"
    echo "[vm-test] building the VM image: debootstrap $suite arm64 from $mirror (once; cached in ${dir#"$root"/})" >&2
    timeout "$build_timeout_s" debootstrap --arch=arm64 --foreign --variant=minbase --include="$packages" \
        "$suite" "$r" "$mirror" >"$build_dir/debootstrap.log" 2>&1 ||
        abort "debootstrap (first stage) of $suite arm64" "$build_dir/debootstrap.log"
    configure_rootfs "$r"
    binfmt_register "$r"
    timeout "$build_timeout_s" chroot "$r" /debootstrap/debootstrap --second-stage >>"$build_dir/debootstrap.log" 2>&1 ||
        { unmount_under "$r/"; abort "debootstrap second stage (chroot under qemu-aarch64-static)" "$r/debootstrap/debootstrap.log"; }
    unmount_under "$r/"
    add_16k_kernel "$r" >>"$build_dir/debootstrap.log" 2>&1 || { unmount_under "$r/"; abort "installing the 16 KiB-page kernel (bookworm-backports)" "$build_dir/debootstrap.log"; }
    finish_rootfs "$r" >>"$build_dir/debootstrap.log" 2>&1 || { unmount_under "$r/"; abort "configuring the rootfs" "$build_dir/debootstrap.log"; }
    unmount_under "$r/"
    copy_kernel "$r" "$build_dir" "" '^vmlinuz-[0-9.+~a-z-]*-arm64$'
    copy_kernel "$r" "$build_dir" "-16k" '^vmlinuz-.*-arm64-16k$'
    # 8 GiB (sparse): the replica's data file is about 1.1 GiB and install.sh wants 3 GiB free.
    truncate -s 8G "$build_dir/rootfs.img"
    mkfs.ext4 -q -F -L vmroot -d "$r" "$build_dir/rootfs.img" >>"$build_dir/debootstrap.log" 2>&1 ||
        abort "mkfs.ext4 -d of the rootfs" "$build_dir/debootstrap.log"
    rm -rf --one-file-system "$r"
    if [ "$binfmt_added" -eq 1 ]; then echo -1 >/proc/sys/fs/binfmt_misc/qemu-aarch64; binfmt_added=0; fi
    echo "$(( $(now_ms) - t0 ))" >"$build_dir/build-ms"
    mv "$build_dir" "$dir"
    build_dir=""
}

# The cache key: IMAGE_VERSION and a hash of the recipe (the functions above and the package list).
recipe_hash="$( { declare -f binfmt_register configure_rootfs write_vm_runner add_16k_kernel copy_kernel finish_rootfs build_image; echo "$packages $suite"; } |
    sha256sum | cut -c1-12)"
image_key="debian12-arm64-v$IMAGE_VERSION-$recipe_hash"
image="$vm_dir/$image_key"
echo "== VM image $image_key"
build_ms=""
if [ ! -s "$image/rootfs.img" ]; then
    # Older recipes' images and builds a killed run left behind.
    for old in "$vm_dir"/debian12-arm64-* "$vm_dir"/build.*; do
        [ -e "$old" ] || continue
        unmount_under "$old/"
        rm -rf --one-file-system "$old"
    done
    build_image "$image"
    build_ms="$(cat "$image/build-ms")"
    pass "built the Debian 12 arm64 image ($(secs "$build_ms"), kernel $(cat "$image/kernel-version"))"
else
    pass "cached Debian 12 arm64 image (kernel $(cat "$image/kernel-version"), built in $(secs "$(cat "$image/build-ms")"))"
fi
du -sh --apparent-size "$image/rootfs.img" | awk '{ printf "      rootfs.img %s apparent, ", $1 }'
du -sh "$image/rootfs.img" | awk '{ print $1 " on disk" }'

# --- the run -----------------------------------------------------------------------------------
run_dir="$vm_dir/run.$$"
share="$run_dir/share"
rm -rf "$vm_dir"/run.* "$vm_dir/last-run"
mkdir -p "$share"
cp "$tarball" "$tarball.sha256" "$share/"
qemu-img create -q -f qcow2 -b "$image/rootfs.img" -F raw "$run_dir/disk.qcow2"

cat >"$share/run.sh" <<'GUEST'
#!/bin/bash
# Runs inside the VM as root, started at boot by vm-runner; written by cross/vm-test.sh. It
# installs the bundle as an operator would and checks the appliance under systemd. No set -e:
# every check reports, and a failure leaves the journal for the host to show.
set -uo pipefail
share=/host
date +%s%3N >"$share/started"
. "$share/params"
now_ms() { date +%s%3N; }
t_start=$(now_ms)
passed=0
failed=0
check() {
    local desc="$1"
    shift
    if "$@" >/tmp/check.out 2>&1; then
        passed=$((passed + 1))
        printf 'ok    guest: %s\n' "$desc"
    else
        failed=$((failed + 1))
        printf 'FAIL  guest: %s\n' "$desc"
        sed 's/^/      | /' /tmp/check.out | tail -20
    fi
}
note() { printf '      %s\n' "$*"; }
timing() { printf '%s %s\n' "$1" "$2" >>"$share/timings"; }
# wait_for SECONDS CMD...: CMD until it succeeds, at most SECONDS.
wait_for() {
    local end=$(($(date +%s) + $1))
    shift
    until "$@"; do
        [ "$(date +%s)" -lt "$end" ] || { echo "not within the time box"; return 1; }
        sleep 0.5
    done
}
healthy() { curl -fsS -m 5 -o /dev/null http://127.0.0.1/healthz 2>/dev/null; }
json_field() { sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p"; }
main_pid() { systemctl show -p MainPID --value "$1"; }

# buy: checkout, MockPay "succeeded", then the order must be PAID with a ticket code. Sets
# order_id and ticket_code.
buy() {
    local out psid emit status
    order_id="" ticket_code=""
    out="$(curl -fsS -m 30 -X POST http://127.0.0.1/api/checkout -H 'content-type: application/json' \
        -d '{"cls":"A","customer_email":"pi@example.com"}')" || { echo "checkout: $out"; return 1; }
    order_id="$(printf '%s' "$out" | json_field order_id)"
    psid="$(printf '%s' "$out" | json_field redirect_url | sed 's#^/mockpay/##')"
    [ -n "$order_id" ] && [ -n "$psid" ] || { echo "checkout answered $out"; return 1; }
    emit="$(curl -s -o /dev/null -w '%{http_code}' -m 30 -X POST "http://127.0.0.1/mockpay/$psid/emit" -d t=succeeded)"
    [ "$emit" = 303 ] || { echo "MockPay emit answered $emit"; return 1; }
    order_is_paid "$order_id"
}
# order_is_paid ID [CODE]: PAID with a TCK- code (CODE if given); sets ticket_code.
order_is_paid() {
    local out status
    out="$(curl -fsS -m 30 "http://127.0.0.1/api/orders/$1")" || { echo "order $1: $out"; return 1; }
    status="$(printf '%s' "$out" | json_field status)"
    ticket_code="$(printf '%s' "$out" | json_field ticket_code)"
    echo "$out"
    [ "$status" = PAID ] && [ "${ticket_code#TCK-}" != "$ticket_code" ] && { [ -z "${2:-}" ] || [ "$ticket_code" = "$2" ]; }
}

echo "== guest: Debian $(cat /etc/debian_version) arm64 under qemu (TCG)"
note "uname -r: $(uname -r)"
check "getconf PAGESIZE is $PAGE_BYTES (the kernel booted)" test "$(getconf PAGESIZE)" = "$PAGE_BYTES"
note "$(nproc) CPUs, $(awk '/^MemTotal:/ { printf "%d MiB", $2 / 1024 }' /proc/meminfo), booted in $(cut -d' ' -f1 /proc/uptime) s (kernel to this script)"
check "the kernel has io_uring (CONFIG_IO_URING=y, not disabled)" bash -c \
    'grep -qx CONFIG_IO_URING=y "/boot/config-$(uname -r)" && { [ ! -e /proc/sys/kernel/io_uring_disabled ] || [ "$(cat /proc/sys/kernel/io_uring_disabled)" = 0 ]; }'
check "/var/lib is ext4 and takes O_DIRECT writes" bash -c \
    'findmnt -no FSTYPE -T /var/lib | grep -qx ext4 && dd if=/dev/zero of=/var/lib/.odirect bs=4096 count=256 oflag=direct,dsync status=none && rm /var/lib/.odirect'

# As OPERATOR.md says: unpack, check, install.
cd /root || exit 1
cp "$share/$TARBALL" "$share/$TARBALL.sha256" .
check "the tarball matches its .sha256" sha256sum -c --quiet "$TARBALL.sha256"
tar -xzf "$TARBALL"
cd "$NAME" || exit 1
check "SHA256SUMS inside the bundle verify" sha256sum -c --quiet SHA256SUMS
t_install=$(now_ms)
check "./install.sh installs, enables and starts both units" bash -c "set -o pipefail; ./install.sh 2>&1 | tee '$share/install.log'"
t_installed=$(now_ms)
if grep -q 'tigerfans is healthy' "$share/install.log"; then
    note "install.sh saw /healthz 200 after $(( (t_installed - t_install) / 1000 )) s"
else
    note "install.sh did not see /healthz 200 within its 60 s (it only warns)"
fi
check "tigerfans answers /healthz 200 (the replica formatted and listening)" wait_for "$WAIT_S" healthy
t_healthy=$(now_ms)
check "tigerbeetle.service is active" systemctl is-active --quiet tigerbeetle.service
check "tigerfans.service is active" systemctl is-active --quiet tigerfans.service
check "both units are enabled (they come back after a reboot)" systemctl is-enabled --quiet tigerbeetle.service tigerfans.service
# The replica's journal: when systemd started the unit (format, then start) and when it listened.
# (%.0f: mawk's %d stops at 2^31.)
ts_of() { journalctl -u tigerbeetle.service -o short-unix --no-pager | grep -m1 -e "$1" | awk '{ printf "%.0f", $1 * 1000 }'; }
t_unit=$(ts_of 'Starting tigerbeetle')
t_formatted=$(ts_of 'Started tigerbeetle')
t_listen=$(ts_of 'listening on 127.0.0.1:3001')
check "the replica logged 'listening on 127.0.0.1:3001'" test -n "$t_listen"
if [ -n "$t_listen" ]; then
    timing replica_ready $((t_listen - t_install))
    [ -z "$t_unit" ] || [ -z "$t_formatted" ] || timing replica_format $((t_formatted - t_unit))
    [ -z "$t_formatted" ] || timing replica_open $((t_listen - t_formatted))
fi
timing healthy $((t_healthy - t_install))
tb_pid=$(main_pid tigerbeetle.service)
check "the replica runs as tigerfans with its memory locked (LimitMEMLOCK=infinity)" bash -c \
    "[ \"\$(stat -c %U /proc/$tb_pid)\" = tigerfans ] && awk '/^VmLck:/ { exit !(\$2 > 0) }' /proc/$tb_pid/status"
note "replica: $(awk '/^VmRSS:|^VmLck:/ { printf "%s %d MiB  ", $1, $2 / 1024 }' "/proc/$tb_pid/status"); $(grep -h '^TIGERFANS_TB_PROFILE=' /etc/tigerfans/tigerbeetle.env)"
check "install.sh picked the $PROFILE profile for $(awk '/^MemTotal:/ { printf "%d MiB", $2 / 1024 }' /proc/meminfo) of RAM" \
    grep -qx "TIGERFANS_TB_PROFILE=$PROFILE" /etc/tigerfans/tigerbeetle.env

t0=$(now_ms)
check "a ticket is bought: checkout, MockPay succeeded (303), the order PAID with a TCK- code" buy
timing purchase $(($(now_ms) - t0))
first_order="$order_id"
first_code="$ticket_code"
note "order $first_order: $first_code"

tf_pid=$(main_pid tigerfans.service)
check "systemctl restart tigerfans" systemctl restart tigerfans.service
tf_back() { local p; p=$(main_pid tigerfans.service); [ "$p" != 0 ] && [ "$p" != "$tf_pid" ] && wait_for "$WAIT_S" healthy; }
check "tigerfans runs again (a new MainPID) and answers /healthz 200" tf_back
check "the order is still PAID with the same code after the restart" order_is_paid "$first_order" "$first_code"

# install.sh again (an operator re-running it, or the same bundle twice): nothing changed, so
# nothing is restarted and the config is kept.
tb_pid=$(main_pid tigerbeetle.service)
tf_pid=$(main_pid tigerfans.service)
check "install.sh again: succeeds, keeps the config" bash -c \
    "set -o pipefail; ./install.sh 2>&1 | tee '$share/install-again.log' | grep -q 'kept the existing /etc/tigerfans/event.toml'"
check "... and restarts nothing (same MainPIDs, both active)" bash -c \
    "[ \"\$(systemctl show -p MainPID --value tigerbeetle.service)\" = $tb_pid ] && [ \"\$(systemctl show -p MainPID --value tigerfans.service)\" = $tf_pid ] && systemctl is-active --quiet tigerbeetle.service tigerfans.service"

t0=$(now_ms)
check "kill -9 of the replica (MainPID $tb_pid)" kill -9 "$tb_pid"
restarted() { local p; p=$(main_pid tigerbeetle.service); [ "$p" != 0 ] && [ "$p" != "$tb_pid" ] && systemctl is-active --quiet tigerbeetle.service; }
check "systemd restarts tigerbeetle (a new MainPID, active)" wait_for "$WAIT_S" restarted
check "service resumes by itself: /healthz 200" wait_for "$WAIT_S" healthy
timing recovery $(($(now_ms) - t0))
check "tigerfans.service stayed up meanwhile (same MainPID: Wants=, not Requires=)" \
    test "$(main_pid tigerfans.service)" = "$tf_pid"
check "another ticket is bought after the replica's restart" buy
check "the first order is still PAID with the same code" order_is_paid "$first_order" "$first_code"

# Its table and figures on stdout (printed by the host at the end), its progress on stderr.
check "tigerfans bench --phase checkout --duration 5 --concurrency 16" bash -c \
    "cd /root && /usr/local/bin/tigerfans bench --base http://127.0.0.1 --phase checkout --duration 5 --concurrency 16 \
        >'$share/bench.txt' 2>'$share/bench.err' || { cat '$share/bench.txt' '$share/bench.err'; exit 1; }"
check "the bench's checkouts all succeeded (errors 0, ok > 0)" \
    awk '$1 == "checkout" { found = 1; if ($3 > 0 && $4 == 0) good = 1 } END { exit !(found && good) }' "$share/bench.txt"

rss_mib() { awk '/^VmRSS:/ { printf "%d", $2 / 1024 }' "/proc/$1/status"; }
tb_rss=$(rss_mib "$(main_pid tigerbeetle.service)")
tf_rss=$(rss_mib "$(main_pid tigerfans.service)")
note "after the bench: replica RSS $tb_rss MiB, tigerfans $tf_rss MiB, together $((tb_rss + tf_rss)) MiB; MemAvailable $(awk '/^MemAvailable:/ { printf "%d MiB", $2 / 1024 }' /proc/meminfo)"
timing rss_mib $((tb_rss + tf_rss))
check "systemctl stop tigerfans" systemctl stop tigerfans.service
. /etc/tigerfans/cluster.env
check "tigerfans audit of the installed data dir passes (tigerfans stopped, the replica running)" bash -c \
    "set -o pipefail; cd /var/lib/tigerfans && runuser -u tigerfans -- /usr/local/bin/tigerfans audit --data-dir /var/lib/tigerfans \
        --config /etc/tigerfans/event.toml --tb-addresses 127.0.0.1:3001 --tb-cluster '$TB_CLUSTER' 2>&1 | tee '$share/audit.txt'"
sed 's/^/      /' "$share/audit.txt" | grep -v -e '^      [0-9T:.-]*Z ' | head -20
start_tigerfans() { systemctl start tigerfans.service && wait_for "$WAIT_S" healthy; }
check "tigerfans starts again and answers /healthz 200" start_tigerfans
timing guest_run $(($(now_ms) - t_start))

journalctl -b --no-pager -u tigerbeetle.service -u tigerfans.service >"$share/journal.txt" 2>&1
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
GUEST
chmod 0755 "$share/run.sh"
# The time box of each wait in the guest: a slow emulated step must not eat the whole run's.
# install.sh's pick for this much RAM (MemTotal is a little below -m): under 3 GiB small, under 6 medium.
if [ "$mem_mib" -lt 3072 ]; then profile=small; elif [ "$mem_mib" -lt 6144 ]; then profile=medium; else profile=large; fi
printf 'TARBALL=%q\nNAME=%q\nWAIT_S=%q\nPAGE_BYTES=%q\nPROFILE=%q\n' "$name.tar.gz" "$name" 300 "$page_bytes" "$profile" >"$share/params"

echo "== boot: qemu-system-aarch64 -M virt -cpu max -smp 2 -m $mem_mib (TCG), kernel $(cat "$image/kernel-version$kernel_suffix") ($((page_bytes / 1024)) KiB pages)"
t_qemu=$(now_ms)
qemu-system-aarch64 -name tigerfans-vm-test \
    -M virt -cpu max,pauth-impdef=on -accel tcg,thread=multi -smp 2 -m "$mem_mib" \
    -kernel "$image/vmlinuz$kernel_suffix" -initrd "$image/initrd$kernel_suffix.img" \
    -append "root=/dev/vda rw console=ttyAMA0 panic=1 mitigations=off" \
    -drive "file=$run_dir/disk.qcow2,format=qcow2,if=none,id=root,cache=unsafe,discard=unmap" \
    -device virtio-blk-pci,drive=root \
    -virtfs "local,path=$share,mount_tag=host,security_model=none,id=host" \
    -device virtio-rng-pci \
    -nic none -display none -monitor none -serial "file:$run_dir/console.log" -no-reboot \
    >"$run_dir/qemu.log" 2>&1 &
qemu_pid=$!

# Wait for the guest (time-boxed), echoing its lines as they come.
deadline=$(( $(date +%s) + timeout_s ))
t_started=""
shown=0
timed_out=0
show_new() {
    local n
    [ -f "$share/guest.log" ] || return 0
    n=$(wc -l <"$share/guest.log")
    [ "$n" -gt "$shown" ] || return 0
    sed -n "$((shown + 1)),${n}p" "$share/guest.log" | grep -v -E '^[0-9]+ passed, [0-9]+ failed$' || true
    shown=$n
}
while kill -0 "$qemu_pid" 2>/dev/null; do
    if [ -z "$t_started" ] && [ -s "$share/started" ]; then
        t_started=$(now_ms)
        pass "the guest booted and started its test script ($(secs $((t_started - t_qemu))) after qemu started)"
    fi
    show_new
    if [ "$(date +%s)" -ge "$deadline" ]; then
        timed_out=1
        kill -KILL "$qemu_pid" 2>/dev/null || true
        break
    fi
    sleep 1
done
wait "$qemu_pid" 2>/dev/null && qemu_rc=0 || qemu_rc=$?
qemu_pid=""
t_end=$(now_ms)
[ -n "$t_started" ] || [ ! -s "$share/started" ] || t_started=$t_end
show_new

console_tail() { tail -n "$1" "$run_dir/console.log" | sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^/      | /'; }
if [ "$timed_out" -eq 1 ]; then
    fail "the guest finished within VM_TIMEOUT_S=$timeout_s s (qemu killed)"
    console_tail 30
elif [ -z "$t_started" ]; then
    fail "the guest booted and started its test script (qemu exited with $qemu_rc)"
    cat "$run_dir/qemu.log" | sed 's/^/      | /'
    console_tail 40
elif [ ! -s "$share/rc" ]; then
    fail "the guest's test script finished (qemu exited with $qemu_rc)"
    console_tail 30
else
    pass "the guest powered off after its test script (qemu exit $qemu_rc)"
fi

guest_summary="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$share/guest.log" 2>/dev/null | tail -1 || true)"
if [ -n "$guest_summary" ]; then
    passed=$((passed + $(echo "$guest_summary" | awk '{ print $1 }')))
    failed=$((failed + $(echo "$guest_summary" | awk '{ print $3 }')))
elif [ -s "$share/started" ]; then
    fail "the guest's test script printed its summary"
fi
if [ "$(cat "$share/rc" 2>/dev/null || echo none)" != 0 ] && [ -f "$share/journal.txt" ]; then
    echo "      last lines of the units' journal (all in target/vm/last-run/journal.txt):"
    tail -n 40 "$share/journal.txt" | sed 's/^/      | /'
fi

echo "== timings (emulated aarch64 under TCG on this host: not a Pi's figures)"
t_of() { awk -v k="$1" '$1 == k { print $2; exit }' "$share/timings" 2>/dev/null; }
row() { [ -z "$2" ] || printf '      %-46s %s\n' "$1" "$(secs "$2")"; }
if [ -n "$build_ms" ]; then row "image build (debootstrap, kernel, mkfs)" "$build_ms"; else echo "      image build                                    cached"; fi
[ -z "$t_started" ] || row "boot (qemu start to the guest's script)" $((t_started - t_qemu))
row "replica format+start (install.sh to listening)" "$(t_of replica_ready)"
row "  of which the format (ExecStartPre)" "$(t_of replica_format)"
row "  of which the replica's open to listening" "$(t_of replica_open)"
row "install.sh to /healthz 200" "$(t_of healthy)"
row "purchase (checkout, MockPay, PAID)" "$(t_of purchase)"
[ -z "$(t_of rss_mib)" ] || printf '      %-46s %s MiB\n' "replica + tigerfans RSS after the bench" "$(t_of rss_mib)"
row "kill -9 of the replica to /healthz 200" "$(t_of recovery)"
row "guest script" "$(t_of guest_run)"
row "qemu, start to power-off" $((t_end - t_qemu))
row "whole run (this script)" $(( $(now_ms) - t_script ))
if [ -s "$share/bench.txt" ]; then
    echo "== bench (tigerfans bench in the guest, against its own appliance)"
    sed 's/^/      /' "$share/bench.txt"
fi

# Keep the logs (not the disk) of the last run.
cp "$run_dir/console.log" "$run_dir/qemu.log" "$share/" 2>/dev/null || true
rm -f "$share/$name.tar.gz" "$share/$name.tar.gz.sha256"
if [ "${VM_KEEP:-0}" = 1 ]; then
    mv "$run_dir" "$vm_dir/last-run"
    echo "      kept: $vm_dir/last-run (disk.qcow2 on top of ${image#"$root"/}/rootfs.img)"
else
    rm -f "$run_dir/disk.qcow2"
    mv "$share" "$vm_dir/last-run"
    rm -rf "$run_dir"
fi
run_dir=""
echo "      logs: target/vm/last-run/ (console.log, guest.log, install.log, journal.txt, bench.txt, audit.txt, ...)"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
