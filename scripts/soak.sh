#!/usr/bin/env bash
# Soak: mixed load (the bench's flow phase: checkout, pay or fail at MockPay, poll the order)
# at a steady rate for MINUTES minutes against a fresh appliance, printing per minute: operations,
# errors, p50/p99 latency, tigerfans RSS and the replica's RSS. RSS must stay flat. Ends with an
# offline audit of its data dir, the server stopped (exit 1 if it fails, 2 if it cannot be made).
#
# Usage: scripts/soak.sh [MINUTES (10)] [RATE ops/s (5000: about half the flow maximum measured here)]
# Needs the release build (make build). Prints a Markdown table for the README.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${1:-10}
rate=${2:-5000}
bin=target/release/tigerfans
[ -x "$bin" ] || { echo "soak: $bin missing (make build)" >&2; exit 2; }

work=$(mktemp -d /tmp/tigerfans-soak.XXXXXX)
. scripts/appliance.sh
trap 'stop_appliance; rm -rf "$work"' EXIT
start_appliance "$bin" "$work"
replica=$(pgrep -P "$server" tigerbeetle)
rss_mib() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

echo "soak: $minutes min of flow at $rate/s against $base (tigerfans pid $server, replica pid $replica)"
echo
echo "| minute | orders | errors | ops/s | p50 ms | p99 ms | tigerfans RSS MiB | replica RSS MiB |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
total_errors=0
for minute in $(seq 1 "$minutes"); do
    "$bin" bench --base "$base" --phase flow --rate "$rate" --duration 60 --total 100000000 \
        --concurrency 256 --json "$work/minute.json" >"$work/bench.out" 2>&1
    row=$(python3 - "$work/minute.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
phase = next(p for p in report["phases"] if p["phase"] == "flow")
errors = sum(phase["errors"].values()) if isinstance(phase["errors"], dict) else phase["errors"]
print(phase["ok"], errors, round(phase["throughput"]), round(phase["p50_ms"], 1), round(phase["p99_ms"], 1))
PY
)
    read -r ok errors throughput p50 p99 <<<"$row"
    total_errors=$((total_errors + errors))
    echo "| $minute | $ok | $errors | $throughput | $p50 | $p99 | $(rss_mib "$server") | $(rss_mib "$replica") |"
done
echo
# Millions of orders are more than a live audit reads (it runs inside the serving appliance):
# stop the server and audit its data dir offline.
stop_appliance
audit_rc=0
"$bin" audit --data-dir "$work/data" --tigerbeetle-bin tools/bin/tigerbeetle >"$work/audit" 2>&1 || audit_rc=$?
case $audit_rc in
0) echo "audit after the soak: passed" ;;
2)
    # Not a mismatch: the audit could not be made (a ledger beyond what it reads, say).
    echo "audit after the soak: could not be made"
    grep -v '^ ' "$work/audit" | head -5
    exit 2
    ;;
*)
    echo "audit after the soak: FAILED"
    cat "$work/audit"
    exit 1
    ;;
esac
echo "errors in total: $total_errors"
