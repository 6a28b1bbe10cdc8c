#!/usr/bin/env bash
# ZIG_PATH for tigerbeetle-unofficial-sys when cross compiling for a *-linux-musl Rust target.
# The crate's build.rs runs `zig build clients:c -Dtarget=<arch>-linux-musl ...`; this wrapper turns
# that argument into -Dtarget=<arch>-linux and execs the real Zig with every other argument
# unchanged. The real Zig: $TIGERFANS_REAL_ZIG, else tools/zig-0.14.1/ziglang/zig of this checkout.
set -euo pipefail

if [ -n "${TIGERFANS_REAL_ZIG:-}" ]; then
    zig="$TIGERFANS_REAL_ZIG"
else
    here="$(cd "$(dirname "$0")" && pwd -P)"
    zig="$here/../tools/zig-0.14.1/ziglang/zig"
fi
# Absolute, normalized path (the build runs Zig from another working directory).
case "$zig" in
    /*) ;;
    *) zig="$PWD/$zig" ;;
esac
if [ -d "$(dirname "$zig")" ]; then
    zig="$(cd "$(dirname "$zig")" && pwd -P)/$(basename "$zig")"
fi
if [ ! -x "$zig" ]; then
    echo "zig-wrapper: no Zig at $zig (set TIGERFANS_REAL_ZIG or run scripts/bootstrap.sh)" >&2
    exit 127
fi

args=()
for arg in "$@"; do
    case "$arg" in
        -Dtarget=*-linux-musl) arg="${arg%-musl}" ;;
    esac
    args+=("$arg")
done

exec "$zig" ${args[@]+"${args[@]}"}
