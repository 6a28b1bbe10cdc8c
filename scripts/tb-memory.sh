#!/usr/bin/env bash
# The TigerBeetle replica's memory under each set of start flags: formats one data file, then for
# every flag set starts a replica on a fresh copy of it, waits TB_MEMORY_WAIT_S (12 s: the replica
# allocates everything at start, its RSS is flat after a few seconds) and prints its VmRSS.
# Prints a Markdown table (docs/pi.md "The replica's memory" was made with it):
#   scripts/tb-memory.sh [TIGERBEETLE_BIN]             the flag sets below
#   TB_MEMORY_SETS=$'--cache-grid=64MiB\n--development' scripts/tb-memory.sh   your own, one per line
# The data file goes under target/ (the replica needs Direct I/O: not on tmpfs).
set -euo pipefail
cd "$(dirname "$0")/.."
tigerbeetle="${1:-tools/bin/tigerbeetle}"
wait_s="${TB_MEMORY_WAIT_S:-12}"
port="${TB_MEMORY_PORT:-39001}"
work="target/tb-memory"
min="--cache-accounts=0 --cache-transfers=0 --cache-transfers-pending=0 --memory-lsm-compaction=10752KiB --memory-lsm-manifest=1MiB --limit-pipeline-requests=0"
default_sets="--cache-grid=1GiB
--cache-grid=256MiB
--cache-grid=64MiB
--development
--experimental --cache-grid=64MiB --limit-pipeline-requests=0
--experimental --cache-grid=64MiB --cache-accounts=0 --cache-transfers=0 --cache-transfers-pending=0
--experimental --cache-grid=64MiB --memory-lsm-compaction=10752KiB --memory-lsm-manifest=1MiB
--experimental --cache-grid=64MiB --limit-request=256KiB
--experimental --cache-grid=64MiB --limit-request=512KiB $min
--experimental --cache-grid=64MiB --limit-request=256KiB $min
--experimental --cache-grid=64MiB --limit-request=128KiB $min
--experimental --cache-grid=64MiB --limit-request=64KiB $min
--experimental --cache-grid=64MiB --limit-request=32KiB $min
--experimental --cache-grid=128MiB --limit-request=256KiB $min"
sets="${TB_MEMORY_SETS:-$default_sets}"

rm -rf "$work" && mkdir -p "$work"
pid=""
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"' EXIT
"$tigerbeetle" format --cluster=1 --replica=0 --replica-count=1 "$work/formatted.tigerbeetle" >/dev/null 2>&1

echo "| \`tigerbeetle start\` flags | replica RSS (MiB) |"
echo "|---|---:|"
while IFS= read -r flags; do
    [ -z "$flags" ] && continue
    cp "$work/formatted.tigerbeetle" "$work/run.tigerbeetle"
    # shellcheck disable=SC2086 # the flags are words
    "$tigerbeetle" start --addresses="127.0.0.1:$port" $flags "$work/run.tigerbeetle" >"$work/log" 2>&1 &
    pid=$!
    sleep "$wait_s"
    rss_kib="$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
    if [ -n "$rss_kib" ]; then
        echo "| \`$flags\` | $((rss_kib / 1024)) |"
    else
        echo "| \`$flags\` | did not start: $(grep -m1 'error' "$work/log" | sed 's/.*error([a-z]*): //') |"
    fi
done <<<"$sets"
