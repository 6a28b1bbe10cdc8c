#!/usr/bin/env bash
# Throughput and memory of the appliance under each TigerBeetle memory profile (--tb-profile):
# ROUNDS rounds, each profile once per round in alternating order (machines of this kind drift
# within the hour: compare within a round), each on a fresh appliance (own replica, fresh data
# dir): `tigerfans bench --phase webhook --total TOTAL --concurrency 256` (TOTAL checkouts, then
# as many webhooks), then the RSS of tigerfans and of its replica as the bench read them at the
# end. Prints one Markdown row per run (docs/pi.md "The replica's memory" was made with it).
#
# Usage: scripts/tb-profiles.sh [ROUNDS (2)] [TOTAL (50000)] [PROFILE...(small medium large)]
# Needs the release build (make build); leave the machine otherwise idle.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
total=${2:-50000}
shift $(( $# > 2 ? 2 : $# ))
profiles=("$@")
[ ${#profiles[@]} -gt 0 ] || profiles=(small medium large)
bin=target/release/tigerfans
[ -x "$bin" ] || { echo "tb-profiles: $bin missing (make build)" >&2; exit 2; }
work=$(mktemp -d /tmp/tigerfans-profiles.XXXXXX)
. scripts/appliance.sh
trap 'stop_appliance; rm -rf "$work"' EXIT

echo "| round | profile | checkouts/s | p99 (ms) | webhooks/s | p99 (ms) | tigerfans RSS (MiB) | replica RSS (MiB) |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|"
for round in $(seq 1 "$rounds"); do
    order=("${profiles[@]}")
    if [ $((round % 2)) -eq 0 ]; then
        order=()
        for ((i = ${#profiles[@]} - 1; i >= 0; i--)); do order+=("${profiles[$i]}"); done
    fi
    for profile in "${order[@]}"; do
        start_appliance "$bin" "$work" --tb-profile "$profile"
        if ! "$bin" bench --base "$base" --phase webhook --total "$total" --concurrency 256 \
            --secret-file "$work/data/webhook-secret" --json "$work/bench.json" >"$work/bench.out" 2>&1; then
            cat "$work/bench.out" >&2
            exit 1
        fi
        stop_appliance
        python3 - "$round" "$profile" "$work/bench.json" <<'PY'
import json, sys
round_, profile, path = sys.argv[1:]
phases = {p["phase"]: p for p in json.load(open(path))["phases"]}
c, w = phases["checkout"], phases["webhook"]
mib = lambda b: f"{b / 2**20:,.0f}" if b else "-"
print(f"| {round_} | {profile} | {c['throughput']:,.0f} | {c['p99_ms']:.1f} | {w['throughput']:,.0f} | "
      f"{w['p99_ms']:.1f} | {mib(w['server_rss_bytes'])} | {mib(w['replica_rss_bytes'])} |")
PY
    done
done
