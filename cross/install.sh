#!/usr/bin/env bash
# Installs (or removes) the tigerfans appliance on a Raspberry Pi running 64-bit Raspberry Pi OS,
# from the unpacked bundle this script sits in. Run as root:
#
#   sudo ./install.sh                      install or upgrade (idempotent), enable and start
#   sudo ./install.sh uninstall            stop, disable, remove units and binaries; keep data and config
#   sudo ./install.sh uninstall --purge    also remove /var/lib/{tigerbeetle,tigerfans}, /etc/tigerfans, the user
#
# Testing without systemd: TIGERFANS_INSTALL_ROOT=/some/dir prefixes every path with that directory
# and skips useradd/userdel, chown and systemctl (and the root and platform checks);
# TIGERFANS_MEMINFO=FILE reads the board's RAM from FILE instead of /proc/meminfo.
# TIGERFANS_TB_PROFILE=small|medium|large picks the replica's memory profile on a first install
# (default: by the board's RAM; README.md, Memory).
# TIGERFANS_ALLOW_TB_VERSION_CHANGE=1 lets an install replace a different TigerBeetle version
# (only do that when following TigerBeetle's upgrade documentation).
set -euo pipefail

SERVICE_USER=tigerfans
UNITS=(tigerbeetle.service tigerfans.service)

log() { printf '[install] %s\n' "$*"; }
warn() { printf '[install] WARNING: %s\n' "$*" >&2; }
die() { printf '[install] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
}

bundle="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# --- where things go -------------------------------------------------------------------------
test_mode=0
ROOT=""
if [ -n "${TIGERFANS_INSTALL_ROOT:-}" ]; then
    test_mode=1
    mkdir -p "$TIGERFANS_INSTALL_ROOT"
    ROOT="$(cd "$TIGERFANS_INSTALL_ROOT" && pwd)"
    [ "$ROOT" != "/" ] || die "TIGERFANS_INSTALL_ROOT=/ is the real system: unset it instead"
fi
BIN_DIR="$ROOT/usr/local/bin"
UNIT_DIR="$ROOT/etc/systemd/system"
CONF_DIR="$ROOT/etc/tigerfans"
DOC_DIR="$ROOT/usr/local/share/doc/tigerfans"
TB_DATA="$ROOT/var/lib/tigerbeetle"
TF_DATA="$ROOT/var/lib/tigerfans"

real() { [ "$test_mode" -eq 0 ]; }   # true when installing onto the real system

# --- helpers ---------------------------------------------------------------------------------

# random_hex N: 2N hex characters from the kernel's CSPRNG (openssl if it works, else od).
random_hex() {
    local out=""
    if command -v openssl >/dev/null 2>&1; then
        out="$(openssl rand -hex "$1" 2>/dev/null)" || out=""
    fi
    if [ "${#out}" -ne $(($1 * 2)) ]; then
        out="$(od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n')"
    fi
    [ "${#out}" -eq $(($1 * 2)) ] || die "could not generate random bytes"
    printf '%s' "$out"
}

# ELF machine of a file: aarch64, x86_64, or "" (not an ELF file, e.g. a test stub).
elf_machine() {
    local magic machine
    magic="$(od -An -c -N4 "$1" 2>/dev/null | tr -d ' \n')"
    [ "$magic" = "177ELF" ] || return 0
    machine="$(od -An -tu2 -j18 -N2 "$1" | tr -d ' \n')"
    case "$machine" in
        183) echo aarch64 ;;
        62) echo x86_64 ;;
        *) echo "elf-machine-$machine" ;;
    esac
}

# install_file SRC DST MODE: copy to a temporary name beside DST, then rename over it. Replacing a
# running executable this way is safe (writing into it in place fails with "Text file busy").
install_file() {
    local src="$1" dst="$2" mode="$3"
    install -m "$mode" "$src" "$dst.new.$$"
    mv -f "$dst.new.$$" "$dst"
}

# tb_version BIN: first line of `BIN version` ("TigerBeetle version 0.16.78+c3d9b09"), or "".
tb_version() {
    "$1" version 2>/dev/null | head -n 1 || true
}

mem_total_kib() {
    awk '/^MemTotal:/ { print $2; exit }' "${TIGERFANS_MEMINFO:-/proc/meminfo}" 2>/dev/null || true
}

# The replica's memory profiles: `tigerbeetle start` flags as in src/tb_profile.rs (`tigerfans
# tb-profile NAME` prints them; cross/test-packaging.sh checks that the two agree). Measured
# replica RSS (docs/pi.md): small 1,367 MiB, medium 1,577 MiB, large 2,326 MiB.
tb_start_flags() {
    local lean="--cache-accounts=0 --cache-transfers=0 --cache-transfers-pending=0 --memory-lsm-compaction=10752KiB --memory-lsm-manifest=1MiB --limit-pipeline-requests=0"
    case "$1" in
        small) echo "--experimental --cache-grid=64MiB --limit-request=32KiB $lean" ;;
        medium) echo "--experimental --cache-grid=64MiB --limit-request=256KiB $lean" ;;
        large) echo "--cache-grid=${2:-256MiB}" ;;
        *) die "unknown TigerBeetle profile '$1' (small, medium or large)" ;;
    esac
}

# The profile for this board's RAM: a 2 GB board (MemTotal under 3 GiB) small, replica and
# tigerfans under 1.5 GiB; a 4 GB board (under 6 GiB) medium, leaving 2 GiB for a kiosk browser;
# more: large. TIGERFANS_TB_PROFILE overrides.
tb_profile_for_board() {
    local mem_kib
    mem_kib="$(mem_total_kib)"
    if [ -n "${TIGERFANS_TB_PROFILE:-}" ]; then
        echo "$TIGERFANS_TB_PROFILE"
    elif [ -z "$mem_kib" ]; then
        echo large
    elif [ "$mem_kib" -lt $((3 * 1024 * 1024)) ]; then
        echo small
    elif [ "$mem_kib" -lt $((6 * 1024 * 1024)) ]; then
        echo medium
    else
        echo large
    fi
}

# Says which page size the kernel uses. The Raspberry Pi 5's default kernel (kernel_2712.img)
# uses 16 KiB pages; the bundle is tested on 4 KiB pages and, under emulation, on Debian's 16 KiB
# kernel (docs/pi.md). kernel=kernel8.img in /boot/firmware/config.txt selects 4 KiB pages.
check_page_size() {
    local page
    page="$(getconf PAGESIZE 2>/dev/null || true)"
    case "$page" in
        4096) log "page size: 4 KiB" ;;
        16384) log "page size: 16 KiB (a Raspberry Pi 5 kernel?); see README.md, \"Page size\"" ;;
        "") warn "could not read the page size (getconf PAGESIZE)" ;;
        *) warn "page size: $page bytes: untested (4 KiB and 16 KiB are tested)" ;;
    esac
}

# --- install ---------------------------------------------------------------------------------
preflight() {
    local f
    for f in bin/tigerfans bin/tigerbeetle systemd/tigerbeetle.service systemd/tigerfans.service event.toml; do
        [ -f "$bundle/$f" ] || die "bundle is incomplete: $bundle/$f is missing"
    done
    if [ -f "$bundle/SHA256SUMS" ] && command -v sha256sum >/dev/null 2>&1; then
        (cd "$bundle" && sha256sum --check --quiet --ignore-missing SHA256SUMS) \
            || die "SHA256SUMS does not match the bundle (corrupt download or copy?)"
        log "bundle checksums OK"
    fi
    real || return 0

    [ "$(id -u)" -eq 0 ] || die "run as root: sudo $0"
    command -v systemctl >/dev/null 2>&1 || die "systemd (systemctl) is required"

    # The binaries must match the kernel AND the userland: the units set
    # SystemCallArchitectures=native, so an aarch64 binary under a 32-bit (armhf) userland with a
    # 64-bit kernel would be killed by the syscall filter.
    local arch kernel userland
    arch="$(elf_machine "$bundle/bin/tigerfans")"
    kernel="$(uname -m)"
    if [ -n "$arch" ]; then
        [ "$arch" = "$kernel" ] || die "the bundle is built for $arch, this machine runs $kernel"
        if command -v dpkg >/dev/null 2>&1; then
            userland="$(dpkg --print-architecture)"
            case "$arch:$userland" in
                aarch64:arm64 | x86_64:amd64) ;;
                *) die "the bundle needs a 64-bit OS ($arch), this userland is $userland: install 64-bit Raspberry Pi OS" ;;
            esac
        fi
    fi

    if [ -r /proc/sys/kernel/io_uring_disabled ] && [ "$(cat /proc/sys/kernel/io_uring_disabled)" != "0" ]; then
        die "io_uring is disabled (sysctl kernel.io_uring_disabled=$(cat /proc/sys/kernel/io_uring_disabled)); TigerBeetle needs it: set it to 0"
    fi

    local free_kib
    free_kib="$(df -Pk /var/lib | awk 'NR == 2 { print $4 }')"
    if [ -n "$free_kib" ] && [ "$free_kib" -lt $((3 * 1024 * 1024)) ]; then
        warn "less than 3 GiB free under /var/lib; the TigerBeetle data file alone starts at about 1.1 GiB and grows"
    fi
}

ensure_user() {
    real || return 0
    if ! getent group "$SERVICE_USER" >/dev/null; then
        groupadd --system "$SERVICE_USER"
    fi
    if ! getent passwd "$SERVICE_USER" >/dev/null; then
        useradd --system --gid "$SERVICE_USER" --home-dir "/var/lib/$SERVICE_USER" --no-create-home \
            --shell /usr/sbin/nologin --comment "tigerfans appliance" "$SERVICE_USER"
        log "created system user $SERVICE_USER"
    fi
}

# Refuse to swap the TigerBeetle server for another version by accident: a data file is only
# guaranteed to open with the release that formatted it (or through TigerBeetle's upgrade path).
check_tb_version() {
    local dst="$BIN_DIR/tigerbeetle" old new
    [ -x "$dst" ] || return 0
    old="$(tb_version "$dst")"
    new="$(tb_version "$bundle/bin/tigerbeetle")"
    if [ -n "$old" ] && [ -n "$new" ] && [ "$old" != "$new" ]; then
        if [ "${TIGERFANS_ALLOW_TB_VERSION_CHANGE:-0}" = "1" ]; then
            warn "replacing '$old' with '$new' (TIGERFANS_ALLOW_TB_VERSION_CHANGE=1)"
        else
            die "installed TigerBeetle is '$old', the bundle has '$new'. Follow TigerBeetle's upgrade docs, then re-run with TIGERFANS_ALLOW_TB_VERSION_CHANGE=1"
        fi
    fi
}

changed_units=()

install_binaries() {
    local name
    mkdir -p "$BIN_DIR"
    for name in tigerbeetle tigerfans; do
        if [ -f "$BIN_DIR/$name" ] && cmp -s "$bundle/bin/$name" "$BIN_DIR/$name"; then
            continue
        fi
        install_file "$bundle/bin/$name" "$BIN_DIR/$name" 0755
        changed_units+=("$name.service")
        log "installed $BIN_DIR/$name"
    done
}

install_units() {
    local unit
    mkdir -p "$UNIT_DIR"
    for unit in "${UNITS[@]}"; do
        if [ -f "$UNIT_DIR/$unit" ] && cmp -s "$bundle/systemd/$unit" "$UNIT_DIR/$unit"; then
            continue
        fi
        install_file "$bundle/systemd/$unit" "$UNIT_DIR/$unit" 0644
        changed_units+=("$unit")
        log "installed $UNIT_DIR/$unit"
    done
}

install_docs() {
    [ -f "$bundle/README.md" ] || return 0
    mkdir -p "$DOC_DIR"
    install_file "$bundle/README.md" "$DOC_DIR/README.md" 0644
}

install_config() {
    mkdir -p "$CONF_DIR"
    chmod 0750 "$CONF_DIR"
    if real; then chown "root:$SERVICE_USER" "$CONF_DIR"; fi

    local config="$CONF_DIR/event.toml" password_file="$CONF_DIR/admin-password"
    if [ ! -e "$config" ]; then
        local secret password tmp
        secret="$(random_hex 24)"
        password="$(random_hex 10)"
        tmp="$config.new.$$"
        # Created private (umask 077) before the secrets go in; opened to the group below.
        (umask 077 && sed -e "s/__GENERATED_WEBHOOK_SECRET__/$secret/" \
            -e "s/__GENERATED_ADMIN_PASSWORD__/$password/" "$bundle/event.toml" >"$tmp")
        if grep -q -e '__GENERATED_WEBHOOK_SECRET__' -e '__GENERATED_ADMIN_PASSWORD__' "$tmp"; then
            rm -f "$tmp"
            die "event.toml still has a placeholder after generating secrets"
        fi
        if real; then chown "root:$SERVICE_USER" "$tmp"; fi
        chmod 0640 "$tmp"
        (umask 077 && printf '%s\n' "$password" >"$password_file.new.$$")
        chmod 0600 "$password_file.new.$$"
        if real; then chown root:root "$password_file.new.$$"; fi
        mv -f "$password_file.new.$$" "$password_file"
        mv -f "$tmp" "$config"
        log "created $config with a generated webhook secret and admin password"
    else
        log "kept the existing $config"
        # The service reads it as group tigerfans; keep that working after hand edits.
        chmod 0640 "$config"
        if real; then chown "root:$SERVICE_USER" "$config"; fi
    fi

    install_tb_profile
    install_cluster_id

    local tf_env="$CONF_DIR/tigerfans.env"
    if [ ! -e "$tf_env" ]; then
        cat >"$tf_env.new.$$" <<'EOF'
# Optional tigerfans settings, read by tigerfans.service (restart it after a change:
#   sudo systemctl restart tigerfans). Listen address, data dir, TigerBeetle address and config
# path are fixed in the unit; everything else from `tigerfans --help` may be set here, e.g.:
#TIGERFANS_LOG=info
#TIGERFANS_LOG_FORMAT=json
#TIGERFANS_WORKER_THREADS=4
#TIGERFANS_MAX_CONNECTIONS=4096
#TIGERFANS_TB_TIMEOUT_MS=5000
EOF
        chmod 0644 "$tf_env.new.$$"
        mv -f "$tf_env.new.$$" "$tf_env"
    fi
}

# tigerbeetle.env: the replica's memory profile, once, picked by the board's RAM, read by both units
# (tigerfans sizes its batches by it). An env file from before profiles (TB_CACHE_GRID only) ran
# with TigerBeetle's production defaults: it becomes `large` with its grid cache, as a replica
# must not replay its journal with a smaller request limit.
install_tb_profile() {
    local env_file="$CONF_DIR/tigerbeetle.env" profile grid="" mem_kib
    if [ -e "$env_file" ] && grep -q '^TIGERFANS_TB_PROFILE=' "$env_file"; then
        log "kept the existing $env_file ($(grep '^TIGERFANS_TB_PROFILE=' "$env_file"))"
        return 0
    fi
    if [ -e "$env_file" ]; then
        profile=large
        grid="$(sed -n 's/^TB_CACHE_GRID=//p' "$env_file" | tail -n 1)"
        log "upgrading $env_file from before memory profiles: large, its grid cache kept (${grid:-256MiB})"
    else
        profile="$(tb_profile_for_board)"
        mem_kib="$(mem_total_kib)"
        log "this board has ${mem_kib:+$((mem_kib / 1024)) MiB of }RAM: TigerBeetle profile $profile"
    fi
    {
        echo "# TigerBeetle's memory profile, read by tigerbeetle.service (its start flags) and"
        echo "# tigerfans.service (its batch size). small: 2 GB boards, medium: 4 GB, large: 8 GB and up"
        echo "# (README.md, Memory). A data file may move to a larger profile, never to a smaller one. After"
        echo "# a change: sudo systemctl restart tigerbeetle tigerfans"
        echo "TIGERFANS_TB_PROFILE=$profile"
        echo "TB_START_FLAGS=$(tb_start_flags "$profile" "$grid")"
    } >"$env_file.new.$$"
    chmod 0644 "$env_file.new.$$"
    mv -f "$env_file.new.$$" "$env_file"
    log "wrote $env_file (TIGERFANS_TB_PROFILE=$profile)"
}

# The TigerBeetle cluster id, once: random (cluster 0 is TigerBeetle's testing cluster), read by
# both units from cluster.env. An install from before the id was kept formatted its data file
# with cluster 0, and keeps it.
install_cluster_id() {
    local cluster_env="$CONF_DIR/cluster.env" cluster
    if [ -e "$cluster_env" ]; then
        log "kept the existing $cluster_env"
        return 0
    fi
    if [ -e "$TB_DATA/0_0.tigerbeetle" ]; then
        cluster=0
        warn "the TigerBeetle data file predates cluster.env: it keeps cluster 0"
    else
        # 56 random bits in decimal (bash arithmetic is 64-bit signed), never 0.
        cluster="$(od -An -N7 -tu8 /dev/urandom | tr -d ' ')"
        cluster=$((cluster | 1))
    fi
    printf '%s\n' \
        "# The TigerBeetle cluster id of this appliance, read by tigerbeetle.service (format) and" \
        "# tigerfans.service (its client). Never change it once the data file is formatted." \
        "TB_CLUSTER=$cluster" >"$cluster_env.new.$$"
    chmod 0644 "$cluster_env.new.$$"
    mv -f "$cluster_env.new.$$" "$cluster_env"
    log "created $cluster_env (TB_CLUSTER=$cluster)"
}

# The data directories belong to systemd (StateDirectory=); in test mode create them so the test can
# see what uninstall keeps and what --purge removes.
ensure_state_dirs() {
    real && return 0
    mkdir -p "$TB_DATA" "$TF_DATA"
}

start_services() {
    real || { log "test mode: skipped systemctl"; return 0; }
    systemctl daemon-reload
    # Already running (an upgrade): restart what this install changed; enable --now starts the rest.
    local unit changed restart=()
    for unit in "${UNITS[@]}"; do
        systemctl is-active --quiet "$unit" || continue
        for changed in "${changed_units[@]+"${changed_units[@]}"}"; do
            if [ "$changed" = "$unit" ]; then
                restart+=("$unit")
                break
            fi
        done
    done
    if [ "${#restart[@]}" -gt 0 ]; then
        log "restarting ${restart[*]}"
        systemctl restart "${restart[@]}"
    fi
    systemctl enable --now --quiet "${UNITS[@]}"
    log "enabled and started ${UNITS[*]}"
}

wait_healthy() {
    real || return 0
    command -v curl >/dev/null 2>&1 || return 0
    for _ in $(seq 1 60); do
        if curl -fsS -m 2 -o /dev/null http://127.0.0.1/healthz 2>/dev/null; then
            log "tigerfans is healthy"
            return 0
        fi
        sleep 1
    done
    warn "tigerfans did not answer /healthz within 60 s: see journalctl -u tigerbeetle -u tigerfans"
}

print_summary() {
    local ip
    ip="$(hostname -I 2>/dev/null | awk '{ print $1 }' || true)"
    [ -n "$ip" ] || ip="<this-board's-address>"
    cat <<EOF

tigerfans is installed.
  Shop:            http://$ip/   (on this board: http://localhost/)
  Admin user:      $(awk -F'"' '/^admin_user/ { print $2; exit }' "$CONF_DIR/event.toml" 2>/dev/null || echo admin)
  Admin password:  sudo cat ${CONF_DIR#"$ROOT"}/admin-password
  Event config:    ${CONF_DIR#"$ROOT"}/event.toml   (then: sudo systemctl restart tigerfans)
  Replica memory:  ${CONF_DIR#"$ROOT"}/tigerbeetle.env
  Logs:            journalctl -u tigerfans -u tigerbeetle
EOF
}

do_install() {
    preflight
    check_page_size
    ensure_user
    check_tb_version
    install_binaries
    install_units
    install_docs
    install_config
    ensure_state_dirs
    start_services
    wait_healthy
    print_summary
}

# --- uninstall -------------------------------------------------------------------------------
do_uninstall() {
    local purge=0 arg unit
    for arg in "$@"; do
        case "$arg" in
            --purge) purge=1 ;;
            *) usage >&2; exit 2 ;;
        esac
    done
    if real; then
        [ "$(id -u)" -eq 0 ] || die "run as root: sudo $0 uninstall $*"
        # tigerfans first: it drains against a live replica.
        systemctl disable --now tigerfans.service >/dev/null 2>&1 || true
        systemctl disable --now tigerbeetle.service >/dev/null 2>&1 || true
    fi
    for unit in "${UNITS[@]}"; do
        rm -f "$UNIT_DIR/$unit"
    done
    if real; then
        systemctl daemon-reload
        systemctl reset-failed "${UNITS[@]}" >/dev/null 2>&1 || true
    fi
    rm -f "$BIN_DIR/tigerfans" "$BIN_DIR/tigerbeetle"
    rm -rf "$DOC_DIR"
    log "removed the units and binaries"

    if [ "$purge" -eq 1 ]; then
        rm -rf "$TB_DATA" "$TF_DATA" "$CONF_DIR"
        # systemd may keep StateDirectory= data under /var/lib/private for DynamicUser units; ours
        # are not, but leave nothing behind if an operator changed that.
        rm -rf "$ROOT/var/lib/private/tigerbeetle" "$ROOT/var/lib/private/tigerfans"
        if real && getent passwd "$SERVICE_USER" >/dev/null; then
            userdel "$SERVICE_USER" || warn "could not remove the user $SERVICE_USER"
        fi
        if real && getent group "$SERVICE_USER" >/dev/null; then
            groupdel "$SERVICE_USER" 2>/dev/null || true
        fi
        log "purged ${TB_DATA#"$ROOT"}, ${TF_DATA#"$ROOT"}, ${CONF_DIR#"$ROOT"} and the user $SERVICE_USER"
    else
        log "kept the data (${TB_DATA#"$ROOT"}, ${TF_DATA#"$ROOT"}) and the config (${CONF_DIR#"$ROOT"}); 'uninstall --purge' removes them"
    fi
}

command="${1:-install}"
[ "$#" -eq 0 ] || shift
case "$command" in
    install) [ "$#" -eq 0 ] || { usage >&2; exit 2; }; do_install ;;
    uninstall) do_uninstall "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
esac
