#!/usr/bin/env bash
# The appliance on an SD card's sync latency: checkout, webhook and flow throughput and p99 with
# the data dir (store and co-located replica) on a block device that delays every write and
# every flush by 0 (the plain disk), 2, 5 and 10 ms, to show whether group commit and batching
# hold throughput as the sync latency rises (issue "Survive an SD card").
#
# Why a VM: the delay is a device-mapper `delay` target, and this host's kernel has no device
# mapper (no /dev/mapper/control, no modules). So the script boots a KVM guest with Debian 12's
# own kernel (dm-delay is a module there) and measures inside it:
#
#   1. Builds once, and caches in target/vm-amd64/, a Debian 12 amd64 image: debootstrap with
#      linux-image-amd64, systemd, dmsetup, e2fsprogs, curl; an ext4 image made with mkfs.ext4 -d
#      (no mount), keyed by a hash of the recipe. Also a 4 GiB data disk, written with zeros once
#      so that no run pays the host's block allocation (a sparse file would charge it to the
#      first run only). Every run boots on a fresh qcow2 overlay of the pristine image.
#   2. qemu-system-x86_64 -enable-kvm -cpu host -smp 2 -m 8192, direct kernel boot, serial
#      console to a log; the data disk is virtio, cache=none,aio=native, so the guest's writes
#      and flushes reach the host's disk. A unit in the image mounts a 9p share (the bundle's
#      binaries, the guest script below, the results) at boot, runs it and powers off. Where KVM
#      cannot run a stock kernel (a host whose KVM is PVM only, kvm_pvm without kvm_intel or
#      kvm_amd, as on this build machine: Debian's kernel hangs at its first instructions) the
#      guest is emulated instead (-accel tcg -cpu max; VM_ACCEL=kvm|tcg forces one): the delays
#      are the same dm-delay, but the CPU is about 15 to 20 times slower than the host's.
#   3. In the guest, per setting, ROUNDS rounds in alternating order (0 2 5 10, then 10 5 2 0):
#      dm-delay over the data disk (`0 N delay DISK 0 0 DISK 0 MS DISK 0 MS`: reads undelayed,
#      writes and flushes by MS; 0 ms passes bios straight through), then dd of 4 KiB writes:
#      to the device (O_DIRECT, no sync: the delay itself), and after mkfs.ext4 and mount,
#      synced three ways (append as `dd oflag=dsync`; overwrite of a written file, like the
#      store's redo log; O_DIRECT|O_DSYNC, like the replica's journal). Debian 12's dm-delay
#      counts in jiffies (HZ=250), so a setting gives more than it says (2, 5, 10 ms gave 8,
#      13 to 15, 16 ms per write here): the dd columns say what each gave. Then a fresh
#      appliance as scripts/appliance.sh starts it (`serve --accounting-endpoints`, default
#      memory profile, data dir on the device), `bench --phase webhook` (checkouts, then their
#      webhooks), and a second fresh appliance for `bench --phase flow`.
#   4. Prints a Markdown table (one row per run) from the bench JSON files, with the date, the
#      machine and the command, then a second one of where the time went (waits for TigerBeetle
#      and the store, the device's writes and flushes per operation, from /sys/block/*/stat).
#      Results and logs of the last run: target/vm-amd64/last-run/.
#
# Usage: scripts/sd-card.sh            (as root; installs its Debian packages; needs the x86_64
# bundle in dist/, from make dist). Settings (environment): SD_DELAYS_MS ("0 2 5 10"),
# SD_ROUNDS (2), SD_TOTAL (100000 checkouts, then as many webhooks), SD_FLOW_TOTAL (40000),
# SD_DURATION_S (20: each phase stops there), SD_CONCURRENCY (256), SD_SERVE_ARGS (more `serve`
# options, e.g. "--tb-clients 4"), VM_ACCEL (auto), VM_MEM_MIB (8192), VM_TIMEOUT_S (5400),
# VM_MIRROR (the Debian mirror; default: the one this machine's apt uses).
# Takes about 2 minutes to build the image and the data disk (once), then 16 minutes for the
# default 8 runs under TCG (each phase is bounded by SD_DURATION_S). The comparison is within
# one run: a machine shared with other work moves every figure.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

[ "$(id -u)" -eq 0 ] || { echo "sd-card: needs root (debootstrap, chroot)" >&2; exit 2; }

IMAGE_VERSION=1
suite=bookworm
delays="${SD_DELAYS_MS:-0 2 5 10}"
rounds="${SD_ROUNDS:-2}"
total="${SD_TOTAL:-100000}"
flow_total="${SD_FLOW_TOTAL:-40000}"
duration="${SD_DURATION_S:-20}"
concurrency="${SD_CONCURRENCY:-256}"
serve_args="${SD_SERVE_ARGS:-}"
mem_mib="${VM_MEM_MIB:-8192}"
timeout_s="${VM_TIMEOUT_S:-5400}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
name="tigerfans-$version-x86_64-linux"
vm_dir="$root/target/vm-amd64"
command_line="scripts/sd-card.sh (SD_DELAYS_MS=\"$delays\" SD_ROUNDS=$rounds SD_TOTAL=$total SD_FLOW_TOTAL=$flow_total SD_DURATION_S=$duration SD_CONCURRENCY=$concurrency${serve_args:+ SD_SERVE_ARGS=\"$serve_args\"})"
mkdir -p "$vm_dir"

. "$root/cross/vm-lib.sh"
now_ms() { date +%s%3N; }
log() { echo "[sd-card] $*" >&2; }
die() { log "$1"; [ "$#" -lt 2 ] || tail -n 40 "$2" 2>/dev/null | sed 's/^/      | /' >&2; exit 1; }
t_script=$(now_ms)

# --- the bundle --------------------------------------------------------------------------------
bundle="dist/$name"
if [ ! -x "$bundle/bin/tigerfans" ] && [ -s "dist/$name.tar.gz" ]; then
    mkdir -p target/sd-card-bundle
    tar -xzf "dist/$name.tar.gz" -C target/sd-card-bundle
    bundle="target/sd-card-bundle/$name"
fi
if [ ! -x "$bundle/bin/tigerfans" ] || [ ! -x "$bundle/bin/tigerbeetle" ]; then
    die "no x86_64 bundle in dist/ (make dist)"
fi

# --- host tools (Debian packages), installed only if missing -----------------------------------
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v python3 >/dev/null || need+=(python3)
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
if [ "${#need[@]}" -gt 0 ]; then
    log "installing ${need[*]} (apt)"
    apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "${need[@]}" >/dev/null
fi

# One run at a time (runs share the image, the data disk, and the cores).
exec 9>"$vm_dir/lock"
flock -w 7200 9 || die "another sd-card.sh holds $vm_dir/lock"

qemu_pid=""
build_dir=""
run_dir=""
cleanup() {
    [ -z "$qemu_pid" ] || stop_qemu "$qemu_pid"
    if [ -n "$build_dir" ] && [ -d "$build_dir" ]; then
        unmount_under "$build_dir/"
        if awk -v d="$build_dir/" 'index($2, d) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
            log "WARNING: mounts remain under $build_dir; not removing it"
        else
            rm -rf --one-file-system "$build_dir"
        fi
    fi
    [ -z "$run_dir" ] || rm -f "$run_dir/disk.qcow2"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the image ---------------------------------------------------------------------------------
mirror="${VM_MIRROR:-$(apt_mirror | head -1)}"
mirror="${mirror:-http://deb.debian.org/debian}"

packages=systemd,systemd-sysv,udev,kmod,linux-image-amd64,initramfs-tools,dmsetup,e2fsprogs,curl,procps

# Files of the guest. The runner is generic: it runs whatever /host/run.sh the host put in the
# 9p share, so changing the measurement never rebuilds the image.
configure_rootfs() {
    local r="$1"
    echo sd-card-vm >"$r/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 sd-card-vm\n::1 localhost ip6-localhost ip6-loopback\n' >"$r/etc/hosts"
    printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >"$r/etc/fstab"
    mkdir -p "$r/etc/modules-load.d"
    printf '9p\n9pnet_virtio\ndm_delay\n' >"$r/etc/modules-load.d/sd-card.conf"
    write_vm_runner "$r" scripts/sd-card.sh LimitNOFILE=65536 LimitMEMLOCK=infinity
    chroot "$r" /bin/sh -ec '
        systemd-machine-id-setup >/dev/null
        passwd -d root >/dev/null
        systemctl enable vm-runner.service >/dev/null 2>&1
        systemctl mask systemd-firstboot.service apt-daily.timer apt-daily-upgrade.timer \
            e2scrub_all.timer fstrim.timer man-db.timer >/dev/null 2>&1
        ls /boot/initrd.img-* >/dev/null 2>&1 || update-initramfs -c -k all
        apt-get clean
        rm -rf /var/lib/apt/lists/* /var/log/*.log /debootstrap
    '
}

build_image() {
    local dir="$1" r t0 kernel
    t0=$(now_ms)
    build_dir="$vm_dir/build.$$"
    r="$build_dir/rootfs"
    mkdir -p "$r"
    log "building the VM image: debootstrap $suite amd64 from $mirror (once; cached in ${dir#"$root"/})"
    timeout 1800 debootstrap --arch=amd64 --variant=minbase --include="$packages" \
        "$suite" "$r" "$mirror" >"$build_dir/debootstrap.log" 2>&1 ||
        { unmount_under "$r/"; die "debootstrap $suite amd64 failed" "$build_dir/debootstrap.log"; }
    unmount_under "$r/"
    configure_rootfs "$r" >>"$build_dir/debootstrap.log" 2>&1 ||
        { unmount_under "$r/"; die "configuring the rootfs failed" "$build_dir/debootstrap.log"; }
    unmount_under "$r/"
    kernel="$(cd "$r/boot" && ls vmlinuz-* | sort -V | tail -1)"
    kernel="${kernel#vmlinuz-}"
    [ -s "$r/boot/initrd.img-$kernel" ] || die "the rootfs has no initrd for $kernel" "$build_dir/debootstrap.log"
    find "$r/lib/modules/$kernel" -name 'dm-delay.ko*' | grep -q . || die "kernel $kernel has no dm-delay module"
    cp "$r/boot/vmlinuz-$kernel" "$build_dir/vmlinuz"
    cp "$r/boot/initrd.img-$kernel" "$build_dir/initrd.img"
    echo "$kernel" >"$build_dir/kernel-version"
    truncate -s 4G "$build_dir/rootfs.img"
    mkfs.ext4 -q -F -L vmroot -d "$r" "$build_dir/rootfs.img" >>"$build_dir/debootstrap.log" 2>&1 ||
        die "mkfs.ext4 -d of the rootfs failed" "$build_dir/debootstrap.log"
    rm -rf --one-file-system "$r"
    echo "$(( $(now_ms) - t0 ))" >"$build_dir/build-ms"
    mv "$build_dir" "$dir"
    build_dir=""
}

recipe_hash="$( { declare -f configure_rootfs write_vm_runner build_image; echo "$packages $suite"; } | sha256sum | cut -c1-12)"
image="$vm_dir/debian12-amd64-v$IMAGE_VERSION-$recipe_hash"
if [ ! -s "$image/rootfs.img" ]; then
    for old in "$vm_dir"/debian12-amd64-* "$vm_dir"/build.*; do
        [ -e "$old" ] || continue
        unmount_under "$old/"
        rm -rf --one-file-system "$old"
    done
    build_image "$image"
    log "built the image in $(( $(cat "$image/build-ms") / 1000 )) s (kernel $(cat "$image/kernel-version"))"
else
    log "cached image ${image#"$root"/} (kernel $(cat "$image/kernel-version"))"
fi

# The data disk: written once in full, so every block is allocated on the host.
data_img="$vm_dir/data-4g.img"
if [ ! -s "$data_img.done" ]; then
    log "writing the 4 GiB data disk ${data_img#"$root"/} (once)"
    dd if=/dev/zero of="$data_img.tmp" bs=4M count=1024 oflag=direct status=none
    mv "$data_img.tmp" "$data_img"
    echo 4G >"$data_img.done"
fi

# --- the run -----------------------------------------------------------------------------------
run_dir="$vm_dir/run.$$"
share="$run_dir/share"
rm -rf "$vm_dir"/run.* "$vm_dir/last-run"
mkdir -p "$share/bin" "$share/results"
cp "$bundle/bin/tigerfans" "$bundle/bin/tigerbeetle" "$share/bin/"
qemu-img create -q -f qcow2 -b "$image/rootfs.img" -F raw "$run_dir/disk.qcow2"
printf 'SERVE_ARGS=%q\nDELAYS=%q\nROUNDS=%q\nTOTAL=%q\nFLOW_TOTAL=%q\nDURATION=%q\nCONCURRENCY=%q\n' \
    "$serve_args" "$delays" "$rounds" "$total" "$flow_total" "$duration" "$concurrency" >"$share/params"

cat >"$share/run.sh" <<'GUEST'
#!/bin/bash
# Runs inside the VM as root, started at boot by vm-runner; written by scripts/sd-card.sh.
set -euo pipefail
share=/host
. "$share/params"
out="$share/results"
trap 'echo "guest: failed at line $LINENO: $BASH_COMMAND"' ERR
disk=/dev/vdb
mnt=/mnt/sd
bin=/root/bin
mkdir -p "$bin" "$mnt"
cp "$share/bin/tigerfans" "$share/bin/tigerbeetle" "$bin/"
ulimit -n 65536
modprobe dm_delay
sectors=$(blockdev --getsz "$disk")
echo "guest: Debian $(cat /etc/debian_version), kernel $(uname -r), $(nproc) CPUs, $(awk '/^MemTotal:/ { printf "%d MiB", $2 / 1024 }' /proc/meminfo)"
echo "guest: CONFIG_HZ=$(sed -n 's/^CONFIG_HZ=//p' "/boot/config-$(uname -r)") (dm-delay's timer ticks at this rate)"
echo "guest: $(dmsetup targets | grep -w delay)"
# Flush delays (the third device triple) appeared in dm-delay 1.2.1 (Linux 4.x); check anyway.
table() { echo "0 $sectors delay $disk 0 0 $disk 0 $1 $disk 0 $1"; }
if dmsetup create sdprobe --table "$(table 1)" 2>/dev/null; then
    dmsetup remove sdprobe
    echo "guest: dm-delay takes a flush delay (9-argument table): writes and flushes are delayed"
else
    echo "guest: this dm-delay has no flush delay: flushes pass undelayed"
    table() { echo "0 $sectors delay $disk 0 0 $disk 0 $1"; }
fi
echo "$(uname -r)" >"$out/kernel"
nproc >"$out/guest-nproc"
dm_stat() { echo "/sys/block/$(basename "$(readlink -f /dev/mapper/sd)")/stat"; }

# ms per synced 4 KiB write: dd_ms FILE COUNT DD_ARGS...
dd_ms() {
    local f=$1 n=$2 s
    shift 2
    s=$(dd if=/dev/zero of="$f" bs=4k count="$n" "$@" 2>&1 | sed -n 's/.* copied, \([0-9.e+-]*\) s.*/\1/p')
    awk -v s="$s" -v n="$n" 'BEGIN { printf "%.2f", s * 1000 / n }'
}
healthy() { curl -fsS -m 5 -o /dev/null http://127.0.0.1:8000/healthz 2>/dev/null; }
server=""
# start TAG: a fresh appliance as scripts/appliance.sh starts it, data dir on the device
# (SERVE_ARGS split into words on purpose).
start() {
    local t0
    t0=$(date +%s%3N)
    rm -rf "$mnt/data"
    "$bin/tigerfans" serve --data-dir "$mnt/data" --listen 127.0.0.1:8000 --tigerbeetle-bin "$bin/tigerbeetle" \
        --accounting-endpoints $SERVE_ARGS 2>"$mnt/tigerfans.log" &
    server=$!
    for _ in $(seq 1 3000); do
        if healthy; then
            echo $(( $(date +%s%3N) - t0 )) >"$out/$1.start-ms"
            return 0
        fi
        kill -0 "$server" 2>/dev/null || break
        sleep 0.2
    done
    echo "guest: the appliance did not become healthy ($1); its log:"
    tail -n 40 "$mnt/tigerfans.log"
    stop
    return 1
}
stop() {
    [ -n "$server" ] || return 0
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
}
# bench TAG ARGS...: the bench's JSON in results/TAG.json, its output in results/TAG.txt.
bench() {
    local tag=$1 rc=0
    shift
    # The block layer's counters around the phase: the delayed device's writes and their time,
    # the data disk's flushes (what reached the host).
    { echo "dm0 $(cat "$(dm_stat)")"; echo "vdb0 $(cat /sys/block/vdb/stat)"; } >"$out/$tag.iostat"
    "$bin/tigerfans" bench --base http://127.0.0.1:8000 --concurrency "$CONCURRENCY" --duration "$DURATION" \
        --json "$out/$tag.json" "$@" >"$out/$tag.txt" 2>&1 || rc=$?
    { echo "dm1 $(cat "$(dm_stat)")"; echo "vdb1 $(cat /sys/block/vdb/stat)"; } >>"$out/$tag.iostat"
    [ "$rc" -eq 0 ] || echo "guest: bench $tag exited $rc (see results/$tag.txt)"
}

run_setting() {
    local round=$1 ms=$2 tag="r$1-${2}ms"
    echo "guest: round $round, $ms ms: $(date -u +%H:%M:%S)"
    dmsetup create sd --table "$(table "$ms")"
    local dev append over direct
    dev=$(dd_ms /dev/mapper/sd 100 oflag=direct)
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 /dev/mapper/sd
    mount -o noatime /dev/mapper/sd "$mnt"
    # Synced 4 KiB writes: appending (each grows the file: a journal commit), overwriting a
    # written file (the store's redo log: fdatasync = the write, then a flush), and
    # O_DIRECT|O_DSYNC overwrites (the replica's journal: one FUA write).
    append=$(dd_ms "$mnt/dd.append" 100 oflag=dsync)
    dd if=/dev/urandom of="$mnt/dd.over" bs=4k count=100 conv=fsync status=none
    over=$(dd_ms "$mnt/dd.over" 100 conv=notrunc oflag=dsync)
    direct=$(dd_ms "$mnt/dd.over" 100 conv=notrunc oflag=direct,dsync)
    rm -f "$mnt/dd.append" "$mnt/dd.over"
    printf 'device %s\nappend %s\noverwrite %s\ndirect %s\n' "$dev" "$append" "$over" "$direct" >"$out/$tag.dd"
    echo "guest:   4 KiB writes, ms each: device (O_DIRECT, no sync) $dev; synced: append $append, overwrite $over, O_DIRECT $direct"
    if start "$tag-webhook"; then
        bench "$tag-webhook" --phase webhook --total "$TOTAL" --secret-file "$mnt/data/webhook-secret"
        stop
        cp "$mnt/tigerfans.log" "$out/$tag-webhook.log"
        cp "$mnt/data/tigerbeetle.log" "$out/$tag-webhook.tb.log" 2>/dev/null || true
    fi
    if start "$tag-flow"; then
        bench "$tag-flow" --phase flow --total "$FLOW_TOTAL" --secret-file "$mnt/data/webhook-secret"
        stop
        cp "$mnt/tigerfans.log" "$out/$tag-flow.log"
    fi
    grep -h -E '^(checkout|webhook|flow) ' "$out/$tag-webhook.txt" "$out/$tag-flow.txt" 2>/dev/null | sed 's/^/guest:   /' || true
    umount "$mnt"
    dmsetup remove sd
}

read -r -a order <<<"$DELAYS"
for round in $(seq 1 "$ROUNDS"); do
    list=("${order[@]}")
    if [ $((round % 2)) -eq 0 ]; then
        list=()
        for ((i = ${#order[@]} - 1; i >= 0; i--)); do list+=("${order[$i]}"); done
    fi
    for ms in "${list[@]}"; do
        run_setting "$round" "$ms"
    done
done
echo "guest: done $(date -u +%H:%M:%S)"
GUEST
chmod 0755 "$share/run.sh"

# KVM when it can run Debian's kernel. A host whose KVM is PVM only (kvm_pvm, no kvm_intel or
# kvm_amd: this kind of nested cloud VM) runs only guests built as PVM guests: Debian's kernel
# hangs at its first instructions there, so the guest is emulated (TCG) instead.
accel="${VM_ACCEL:-auto}"
if [ "$accel" = auto ]; then
    accel=tcg
    if [ -w /dev/kvm ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then accel=kvm; fi
fi
case "$accel" in
    kvm) [ -w /dev/kvm ] || die "VM_ACCEL=kvm needs /dev/kvm"
         accel_args=(-enable-kvm -cpu host) ;;
    tcg) accel_args=(-accel "tcg,thread=multi" -cpu max)
         log "no KVM for a stock kernel here ($(ls -d /sys/module/kvm_pvm 2>/dev/null >/dev/null && echo 'KVM is PVM only' || echo 'no kvm_intel/kvm_amd')): the guest is emulated (TCG), so its CPU is several times slower than the host's" ;;
    *) die "VM_ACCEL must be auto, kvm or tcg, not '$accel'" ;;
esac
kernel_version="$(cat "$image/kernel-version")"
log "boot: qemu-system-x86_64 ${accel_args[*]} -smp 2 -m $mem_mib, kernel $kernel_version; settings: $delays ms, $rounds rounds"
t_qemu=$(now_ms)
qemu-system-x86_64 \
    "${accel_args[@]}" -smp 2 -m "$mem_mib" \
    -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 panic=1 quiet mitigations=off" \
    -drive "file=$run_dir/disk.qcow2,format=qcow2,if=none,id=root,cache=unsafe" \
    -device virtio-blk-pci,drive=root \
    -drive "file=$data_img,format=raw,if=none,id=data,cache=none,aio=native" \
    -device virtio-blk-pci,drive=data \
    -virtfs "local,path=$share,mount_tag=host,security_model=none,id=host" \
    -device virtio-rng-pci \
    -nic none -display none -monitor none -serial "file:$run_dir/console.log" -no-reboot \
    >"$run_dir/qemu.log" 2>&1 &
qemu_pid=$!

deadline=$(( $(date +%s) + timeout_s ))
shown=0
timed_out=0
show_new() {
    local n
    [ -f "$share/guest.log" ] || return 0
    n=$(wc -l <"$share/guest.log")
    [ "$n" -gt "$shown" ] || return 0
    sed -n "$((shown + 1)),${n}p" "$share/guest.log" >&2
    shown=$n
}
while kill -0 "$qemu_pid" 2>/dev/null; do
    show_new
    if [ "$(date +%s)" -ge "$deadline" ]; then
        timed_out=1
        kill -KILL "$qemu_pid" 2>/dev/null || true
        break
    fi
    sleep 2
done
wait "$qemu_pid" 2>/dev/null || true
qemu_pid=""
show_new
t_end=$(now_ms)
cp "$run_dir/console.log" "$run_dir/qemu.log" "$share/" 2>/dev/null || true
rm -rf "${share:?}/bin"
rm -f "$run_dir/disk.qcow2"
mv "$share" "$vm_dir/last-run"
rm -rf "$run_dir"
run_dir=""
[ "$timed_out" -eq 0 ] || die "the guest did not finish within VM_TIMEOUT_S=$timeout_s s (qemu killed)" "$vm_dir/last-run/console.log"
[ "$(cat "$vm_dir/last-run/rc" 2>/dev/null || echo none)" = 0 ] ||
    die "the guest's script failed (rc $(cat "$vm_dir/last-run/rc" 2>/dev/null || echo none)); logs in target/vm-amd64/last-run/" "$vm_dir/last-run/console.log"

# --- the table ---------------------------------------------------------------------------------
echo
echo "Date: $(date -u +%Y-%m-%dT%H:%MZ). Host: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), kernel $(uname -r);"
echo "guest: qemu ${accel_args[*]}, $(cat "$vm_dir/last-run/results/guest-nproc") vCPUs, $mem_mib MiB, Debian 12 kernel $(cat "$vm_dir/last-run/results/kernel"); data disk virtio, cache=none,aio=native."
echo "Command: $command_line; qemu from start to power-off $(( (t_end - t_qemu) / 1000 )) s, whole script $(( ($(now_ms) - t_script) / 1000 )) s."
echo
python3 - "$vm_dir/last-run/results" "$delays" "$rounds" <<'PY'
import json, os, sys
res, delays, rounds = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])

def path(name):
    return os.path.join(res, name)

def load(tag):
    try:
        return {p["phase"]: p for p in json.load(open(path(tag + ".json")))["phases"]}
    except (OSError, ValueError, KeyError):
        return {}

def kv(name):
    try:
        return dict(line.split(None, 1) for line in open(path(name)) if line.strip())
    except OSError:
        return {}

def errors(p):
    e = p.get("errors") or {}
    return sum(e.values()) if isinstance(e, dict) else e

def cell(p):
    if not p:
        return "-"
    n = errors(p)
    return f"{p['throughput']:,.0f} / {p['p99_ms']:.0f}" + (f" ({n:,} errors)" if n else "")

def avg(p, key):
    return "-" if not p or p.get(key) is None else f"{p[key]:.0f}"

def label(ms):
    return "0 (plain)" if ms == "0" else f"{ms} ms"

runs = [(ms, r) for ms in delays for r in range(1, rounds + 1)]
print("| write delay | round | 4 KiB write, ms: device / synced append / overwrite / O_DIRECT | checkouts/s / p99 ms | webhooks/s / p99 ms | flows/s / p99 ms | TB batch avg: checkout / webhook / flow | store commit group avg: checkout / webhook / flow |")
print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
for ms, r in runs:
    tag = f"r{r}-{ms}ms"
    w, f, d = load(tag + "-webhook"), load(tag + "-flow"), kv(tag + ".dd")
    c, h, fl = w.get("checkout"), w.get("webhook"), f.get("flow")
    sync = " / ".join(d.get(k, "-").strip() for k in ("device", "append", "overwrite", "direct"))
    print(f"| {label(ms)} | {r} | {sync} | {cell(c)} | {cell(h)} | {cell(fl)} | "
          f"{avg(c, 'tb_batch_avg')} / {avg(h, 'tb_batch_avg')} / {avg(fl, 'tb_batch_avg')} | "
          f"{avg(c, 'store_commit_avg')} / {avg(h, 'store_commit_avg')} / {avg(fl, 'store_commit_avg')} |")

# The block layer's view of each bench run (checkout+webhook together, then flow): writes the
# delayed device took per answered operation, their mean time there (the delay as it was under
# load), and the flushes that reached the disk per operation.
print()
print("| write delay | round | appliance start s (format, open) | checkout wait ms: TB / store | webhook wait ms: TB / store | writes / op: checkout+webhook, flow | KiB written / op | mean write ms at the delayed device | flushes / op |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for ms, r in runs:
    tag = f"r{r}-{ms}ms"
    starts, wr, kib, wms, fls = [], [], [], [], []
    for part in ("webhook", "flow"):
        try:
            starts.append(f"{int(open(path(f'{tag}-{part}.start-ms')).read()) / 1000:.0f}")
        except (OSError, ValueError):
            starts.append("-")
        io, ph = kv(f"{tag}-{part}.iostat"), load(f"{tag}-{part}")
        ops = sum(p["ok"] for p in ph.values())
        if not all(k in io for k in ("dm0", "dm1", "vdb0", "vdb1")) or not ops:
            wr.append("-"); kib.append("-"); wms.append("-"); fls.append("-")
            continue
        dm = [b - a for a, b in zip(map(int, io["dm0"].split()), map(int, io["dm1"].split()))]
        vdb = [b - a for a, b in zip(map(int, io["vdb0"].split()), map(int, io["vdb1"].split()))]
        wr.append(f"{dm[4] / ops:.2f}")
        kib.append(f"{dm[6] / 2 / ops:.1f}")
        wms.append(f"{dm[7] / dm[4]:.1f}" if dm[4] else "-")
        fls.append(f"{vdb[15] / ops:.2f}" if len(vdb) > 15 else "-")
    w = load(tag + "-webhook")
    def waits(phase):
        b = (w.get(phase) or {}).get("breakdown_ms") or {}
        t, st = b.get(f"{phase}_tigerbeetle"), b.get(f"{phase}_store")
        return "-" if t is None or st is None else f"{t:.0f} / {st:.0f}"
    print(f"| {label(ms)} | {r} | {', '.join(starts)} | {waits('checkout')} | {waits('webhook')} | {', '.join(wr)} | {', '.join(kib)} | {', '.join(wms)} | {', '.join(fls)} |")
PY
echo
echo "Per-run JSON, bench output and logs: target/vm-amd64/last-run/results/"
