#!/usr/bin/env bash
# An experiment, not what the bundle ships: the TigerBeetle 0.16.78 server built from the source
# vendored in tigerbeetle-unofficial-sys with a smaller compile-time cluster configuration
# (src/config.zig, production: message_size_max and block_size KIB KiB (256 or 128) instead of
# 1 MiB and 512 KiB, clients_max 32 (16 at 128 KiB) instead of 64), for docs/pi.md "A smaller
# compile-time configuration".
# The client stays the crate's (1 MiB messages): it only needs the server's messages to be no
# larger than its own. Such a replica has its own storage format (a data file formatted by the
# stock server does not open, nor the reverse), and tigerfans must run it with a profile whose
# request limit fits its messages (--tb-profile small or medium at 256 KiB, small at 128 KiB).
#
#   scripts/tb-compact.sh [KIB]      builds target/tb-compact-KIB/zig-out/bin/tigerbeetle (~2-3 min)
#   scripts/tb-memory.sh target/tb-compact-256/zig-out/bin/tigerbeetle      its RSS
#   TIGERBEETLE_BIN=$PWD/target/tb-compact-256/zig-out/bin/tigerbeetle TIGERFANS_TB_PROFILE=medium \
#       cargo test --all-targets                                            the whole suite on it
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
zig="$root/tools/zig-0.14.1/ziglang/zig"
[ -x "$zig" ] || { echo "tb-compact: no Zig at $zig (scripts/bootstrap.sh)" >&2; exit 2; }
src="$(cargo metadata --format-version 1 --locked | python3 -c '
import json, os, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "tigerbeetle-unofficial-sys":
        print(os.path.join(os.path.dirname(p["manifest_path"]), "tigerbeetle"))
')"
kib="${1:-256}"
case "$kib" in
    256) clients=32 ;;
    128) clients=16 ;;
    *) echo "tb-compact: KIB is 256 or 128, not '$kib'" >&2; exit 2 ;;
esac
work="$root/target/tb-compact-$kib"
rm -rf "$work" && mkdir -p "$work" && cp -a "$src/." "$work/"
python3 - "$work/src/config.zig" "$kib" "$clients" <<'PY'
import sys
path, kib, clients = sys.argv[1:]
text = open(path).read()
stock = """        .cluster = .{
            .clients_max = 64,
        },
    };

    /// Minimal test configuration"""
compact = f"""        .cluster = .{{
            .clients_max = {clients},
            .message_size_max = {kib} * KiB,
            .block_size = {kib} * KiB,
        }},
    }};

    /// Minimal test configuration"""
assert text.count(stock) == 1, "the production config is not where 0.16.78 has it"
open(path, "w").write(text.replace(stock, compact))
PY
(cd "$work" && "$zig" build -Drelease -Dconfig-release=0.16.78 -Dconfig-release-client-min=0.16.78 \
    -Dgit-commit=c3d9b09dc88e94dde9ac915c6e94a4c650332080)
"$work/zig-out/bin/tigerbeetle" version --verbose | grep -E 'message_size_max|block_size|clients_max' || true
echo "built $work/zig-out/bin/tigerbeetle"
