#!/usr/bin/env bash
# Installs what building and running tigerfans needs, skipping whatever is already there:
#   - libclang-dev (Debian): bindgen in tigerbeetle-unofficial-sys needs it,
#   - Zig 0.14.1 (PyPI `ziglang`) into tools/zig-0.14.1, the path .cargo/config.toml pins as ZIG_PATH,
#   - the TigerBeetle 0.16.78 server, built from the source vendored in tigerbeetle-unofficial-sys,
#     cached as tools/bin/tigerbeetle (client and server versions then match exactly),
#   - the door page's QR decoder (npm `jsqr`, pinned by web/vendor-src/package-lock.json) into
#     web/ (scripts/vendor-web.sh), with Debian's npm if the machine has none.
# Only the registries are used: Debian, PyPI, crates.io, npm.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

log() { printf '[bootstrap] %s\n' "$*" >&2; }

# 1. libclang for bindgen.
# (libclang-cpp*, which some images carry without libclang itself, does not count.)
if ! ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* /usr/lib/*-linux-gnu/libclang.so* \
        /usr/lib/*-linux-gnu/libclang-[0-9]*.so* 2>/dev/null | grep -q .; then
    log "installing libclang-dev (apt)"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq libclang-dev >/dev/null
fi

# 2. Zig 0.14.1 from PyPI.
zig="$root/tools/zig-0.14.1/ziglang/zig"
if [ ! -x "$zig" ] || [ "$("$zig" version 2>/dev/null)" != "0.14.1" ]; then
    log "installing Zig 0.14.1 (PyPI ziglang) into tools/zig-0.14.1"
    rm -rf "$root/tools/zig-0.14.1"
    python3 -m pip install --quiet --disable-pip-version-check --target "$root/tools/zig-0.14.1" ziglang==0.14.1
fi
test "$("$zig" version)" = "0.14.1"

# 3. The TigerBeetle server, from the vendored source of the client crate.
tb_bin="$root/tools/bin/tigerbeetle"
tb_version="0.16.78"
if [ ! -x "$tb_bin" ] || ! "$tb_bin" version 2>/dev/null | grep -q "$tb_version"; then
    log "locating the vendored TigerBeetle source (cargo metadata)"
    manifest="$(cargo metadata --format-version 1 --locked 2>/dev/null || cargo metadata --format-version 1)"
    sys_dir="$(printf '%s' "$manifest" | python3 -c '
import json, os, sys
meta = json.load(sys.stdin)
for p in meta["packages"]:
    if p["name"] == "tigerbeetle-unofficial-sys":
        print(os.path.dirname(p["manifest_path"]))
        break
')"
    test -n "$sys_dir" || { log "tigerbeetle-unofficial-sys not found in cargo metadata"; exit 1; }
    src="$sys_dir/tigerbeetle"
    test -f "$src/build.zig" || { log "no build.zig in $src"; exit 1; }
    # Build in a scratch copy: the registry source stays read-only and pristine.
    work="$root/tools/tigerbeetle-src"
    rm -rf "$work"
    mkdir -p "$work"
    cp -a "$src/." "$work/"
    log "building the TigerBeetle $tb_version server (about 3 minutes)"
    (cd "$work" && "$zig" build -Drelease -Dconfig-release="$tb_version" \
        -Dconfig-release-client-min="$tb_version" \
        -Dgit-commit=c3d9b09dc88e94dde9ac915c6e94a4c650332080)
    mkdir -p "$root/tools/bin"
    cp "$work/zig-out/bin/tigerbeetle" "$tb_bin.tmp"
    mv "$tb_bin.tmp" "$tb_bin"
    rm -rf "$work"
fi
if ! command -v npm >/dev/null 2>&1; then
    log "installing npm (apt)"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq npm >/dev/null
fi
# 4. The web UI's QR decoder (jsQR, from the npm registry, pinned by web/vendor-src/package-lock.json):
#    rust-embed compiles web/ into the binary, so it must be there before the build.
"$root/scripts/vendor-web.sh"
log "ready: $("$tb_bin" version | head -1)"
