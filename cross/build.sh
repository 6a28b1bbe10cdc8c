#!/usr/bin/env bash
# Builds the Raspberry Pi (aarch64) and x86_64 bundles: statically linked musl binaries of
# tigerfans (web UI embedded) and the TigerBeetle 0.16.78 server for the same targets, packed
# with the systemd units, install.sh, a default config and the operator README.
#
#   cross/build.sh [TARGET...]      TARGET: aarch64 | x86_64 (default: both)
#
# Output: dist/tigerfans-VERSION-ARCH-linux.tar.gz (+ .sha256). Tools come from the registries
# only: rustup targets, cargo-zigbuild (PyPI), Zig 0.14.1 (PyPI, via scripts/bootstrap.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
log() { printf '[cross] %s\n' "$*" >&2; }

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(aarch64 x86_64)

./scripts/bootstrap.sh
zig_dir="$root/tools/zig-0.14.1/ziglang"
tb_version="0.16.78"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"

# cargo-zigbuild links with Zig as the C compiler/linker for the musl targets.
if [ ! -x "$root/tools/cargo-zigbuild/bin/cargo-zigbuild" ]; then
    log "installing cargo-zigbuild (PyPI) into tools/cargo-zigbuild"
    python3 -m pip install --quiet --disable-pip-version-check --target "$root/tools/cargo-zigbuild" cargo-zigbuild
fi
export PATH="$root/tools/cargo-zigbuild/bin:$zig_dir:$PATH"

# The client crate's build.rs passes -Dtarget=<arch>-linux-musl, which TigerBeetle's build.zig
# rejects; the wrapper maps it to <arch>-linux (the static client libraries are the same).
export TIGERFANS_REAL_ZIG="$zig_dir/zig"
export ZIG_PATH="$root/cross/zig-wrapper.sh"
# A target dir of its own: a different ZIG_PATH must not invalidate the native build.
export CARGO_TARGET_DIR="$root/target/cross"

tb_src=""
locate_tb_src() {
    [ -n "$tb_src" ] && return
    tb_src="$(cargo metadata --format-version 1 --locked | python3 -c '
import json, os, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "tigerbeetle-unofficial-sys":
        print(os.path.join(os.path.dirname(p["manifest_path"]), "tigerbeetle"))
')"
    test -f "$tb_src/build.zig" || { log "vendored TigerBeetle source not found"; exit 1; }
}

build_tigerbeetle() { # arch -> tools/bin/tigerbeetle-<arch>-linux (cached)
    local arch="$1" out="$root/tools/bin/tigerbeetle-$1-linux"
    if [ -x "$out" ]; then return; fi
    locate_tb_src
    local work="$root/tools/tigerbeetle-src-$arch"
    rm -rf "$work" && mkdir -p "$work" && cp -a "$tb_src/." "$work/"
    log "building the TigerBeetle $tb_version server for $arch-linux (about 3 minutes)"
    (cd "$work" && "$zig_dir/zig" build -Drelease -Dtarget="$arch-linux" \
        -Dconfig-release="$tb_version" -Dconfig-release-client-min="$tb_version" \
        -Dgit-commit=c3d9b09dc88e94dde9ac915c6e94a4c650332080)
    mkdir -p "$root/tools/bin"
    cp "$work/zig-out/bin/tigerbeetle" "$out.tmp" && mv "$out.tmp" "$out"
    rm -rf "$work"
}

mkdir -p dist
for arch in "${targets[@]}"; do
    case "$arch" in
        aarch64|x86_64) ;;
        *) log "unknown target $arch (aarch64 or x86_64)"; exit 2 ;;
    esac
    triple="$arch-unknown-linux-musl"
    if ! rustup target list --installed | grep -qx "$triple"; then
        log "adding the Rust target $triple"
        rustup target add "$triple"
    fi
    # bindgen (in the client crate) parses tb_client.h for the target: give libclang Zig's copy of
    # the compiler and musl headers for it, as it has none of its own for a foreign target.
    # (The variable name has dashes, which only `env` can set; bindgen reads that spelling first.)
    zig_lib="$zig_dir/lib"
    bindgen_args="-isystem $zig_lib/include -isystem $zig_lib/libc/include/$arch-linux-musl -isystem $zig_lib/libc/include/generic-musl -isystem $zig_lib/libc/include/$arch-linux-any -isystem $zig_lib/libc/include/any-linux-any"
    log "building tigerfans for $triple (profile dist: fat LTO, 1 codegen unit, panic=abort, stripped)"
    env "BINDGEN_EXTRA_CLANG_ARGS_${triple}=$bindgen_args" cargo zigbuild --locked --profile dist --target "$triple"
    build_tigerbeetle "$arch"

    name="tigerfans-$version-$arch-linux"
    stage="$root/dist/$name"
    rm -rf "$stage" && mkdir -p "$stage/bin" "$stage/systemd"
    cp "$CARGO_TARGET_DIR/$triple/dist/tigerfans" "$stage/bin/tigerfans"
    cp "$root/tools/bin/tigerbeetle-$arch-linux" "$stage/bin/tigerbeetle"
    cp systemd/tigerbeetle.service systemd/tigerfans.service "$stage/systemd/"
    cp cross/install.sh "$stage/install.sh"
    cp cross/event.toml "$stage/event.toml"
    cp cross/OPERATOR.md "$stage/README.md"
    chmod 755 "$stage/install.sh" "$stage/bin/tigerfans" "$stage/bin/tigerbeetle"
    (cd "$stage" && find . -type f ! -name SHA256SUMS | sort | xargs sha256sum > SHA256SUMS)
    tar -C "$root/dist" --owner=0 --group=0 -czf "$root/dist/$name.tar.gz" "$name"
    (cd "$root/dist" && sha256sum "$name.tar.gz" > "$name.tar.gz.sha256")
    log "packed dist/$name.tar.gz ($(du -h "$root/dist/$name.tar.gz" | cut -f1))"
done
