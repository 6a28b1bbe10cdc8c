#!/usr/bin/env bash
# Where the appliance bends, and what a rush past it does. Open loop throughout (`tigerfans bench
# --rate`): operation i is due at i/rate and its latency counts from then, so a server that falls
# behind shows it as latency instead of quietly slowing the generator down.
#
# Usage:
#   scripts/knee.sh sweep [PHASE ...]          (default: checkout flow)
#     Per phase, steps of 1,000, 2,000, 4,000, 6,000, 8,000 ops/s and then 2,000 more each,
#     each on a FRESH appliance (own replica, fresh data dir): `bench --phase PHASE --rate R
#     --duration D --total R*D --concurrency C`. A step passes when its p99 <= KNEE_P99_MS and no
#     operation failed; the knee is the highest passing rate before the first failing step. A
#     phase's sweep stops after its second failing step (so the chart shows the bend) or at
#     KNEE_RATE_MAX. Prints a table and the knee per phase; keeps each step's JSON as
#     OUT/knee-STAMP/PHASE-RATE.json, the summary as OUT/knee-STAMP/summary.json, and draws
#     docs/knee.svg (scripts/knee_chart.py). A step takes D s plus about 5 s of appliance start
#     and stop: the default sweep runs about 10 steps per phase, some 5 minutes in all.
#   scripts/knee.sh overload KNEE_RATE [PHASE]  (default phase: checkout)
#     One fresh appliance: a background customer load at KNEE_RATE/2 for 95 s, and 5 s after it
#     started a rush at 2 x KNEE_RATE for 60 s (a second bench process). Prints the rush's
#     answers by kind (503s are expected: the server sheds what it cannot take), the background
#     load's per-second timeline, the recovery time (seconds from the end of the rush until the
#     background load's per-second p99 is <= KNEE_P99_MS with no errors, and stays so to its
#     end), the RSS of tigerfans and of its replica (sampled each second: before, peak, after),
#     then stops the server and runs the offline audit of its data dir. Keeps everything in
#     OUT/overload-STAMP/ and draws docs/overload.svg. Exit 1 if the audit finds a mismatch, 2 if
#     it could not be made.
#
# Settings (environment; limits checked before anything starts):
#   KNEE_DURATION_S      seconds per sweep step (10; 1 to 600)
#   KNEE_CONCURRENCY     connections of each bench process (1024; 1 to 16384)
#   KNEE_P99_MS          the p99 limit of a passing step / a recovered second (50; 0.1 to 60000)
#   KNEE_RATE_MAX        the sweep's last rate (60000; 1000 to 1000000)
#   KNEE_RATES           the sweep's rates instead of the list above ("1000 3000 5000"; ascending)
#   KNEE_OVERLOAD_BACKGROUND_S  the background load's length (95; 3 to 3600)
#   KNEE_OVERLOAD_RUSH_DELAY_S  when the rush starts after the background load (5; 0 to 600)
#   KNEE_OVERLOAD_RUSH_S        the rush's length (60; 1 to 3600); delay + rush must end at least
#                               2 s before the background load does (else no recovery to see)
#   KNEE_RUSH_CONCURRENCY       connections of the rush (KNEE_CONCURRENCY); both together at
#                               most 4096, the appliance's --max-connections
#   KNEE_OUT             where the run folders go (bench-runs)
#   KNEE_SVG             the chart's path (docs/knee.svg for sweep, docs/overload.svg for overload)
#
# Needs the release build (make build). The load generator shares the cores with the server and
# its replica: leave the machine otherwise idle (another build on the cores halves every figure).
# matplotlib for the charts is installed into tools/py/ on first use (scripts/knee_chart.py).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/release/tigerfans

die() { echo "knee: $*" >&2; exit 2; }
usage() { sed -n '/^# Usage:/,/^# Needs/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# int NAME VALUE MIN MAX: VALUE is a whole number within [MIN, MAX].
int() {
    [[ "$2" =~ ^[0-9]+$ ]] || die "$1 must be a whole number, not '$2'"
    ((10#$2 >= $3 && 10#$2 <= $4)) || die "$1 must be between $3 and $4, not $2"
}

duration=${KNEE_DURATION_S:-10}
concurrency=${KNEE_CONCURRENCY:-1024}
p99_limit=${KNEE_P99_MS:-50}
rate_max=${KNEE_RATE_MAX:-60000}
out=${KNEE_OUT:-bench-runs}
int KNEE_DURATION_S "$duration" 1 600
int KNEE_CONCURRENCY "$concurrency" 1 16384
int KNEE_RATE_MAX "$rate_max" 1000 1000000
[[ "$p99_limit" =~ ^[0-9]+(\.[0-9]+)?$ ]] && python3 -c "import sys; sys.exit(not 0.1 <= float(sys.argv[1]) <= 60000)" "$p99_limit" \
    || die "KNEE_P99_MS must be a number of milliseconds between 0.1 and 60000, not '$p99_limit'"

[ $# -ge 1 ] || usage
command=$1
shift
case $command in
sweep | overload) ;;
-h | --help | help) usage ;;
*) echo "knee: no command '$command'" >&2; usage ;;
esac

[ -x "$bin" ] || { echo "knee: $bin missing (make build)" >&2; exit 2; }
[ -x tools/bin/tigerbeetle ] || { echo "knee: tools/bin/tigerbeetle missing (scripts/bootstrap.sh)" >&2; exit 2; }

# Phases that stand alone (webhook and commit would run checkout and reserve first, at the same
# rate, in the same process: not one curve).
check_phase() {
    case $1 in
    checkout | reserve | flow) ;;
    *) die "phase must be checkout, reserve or flow, not '$1'" ;;
    esac
}

stamp=$(date -u +%Y%m%dT%H%M%SZ)
work=$(mktemp -d /tmp/tigerfans-knee.XXXXXX)
. scripts/appliance.sh
pids=() # background processes of ours (the RSS sampler, bench processes) to end on the way out
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    stop_appliance
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The server's last lines, when a bench could not run against it.
server_log_tail() {
    echo "knee: the server's log (last 20 lines):" >&2
    tail -n 20 "$work/tigerfans.log" >&2 || true
}

# ---------------------------------------------------------------------------------------------
sweep() {
    local phases=("$@") phase rate fails json row total
    [ ${#phases[@]} -gt 0 ] || phases=(checkout flow)
    for phase in "${phases[@]}"; do check_phase "$phase"; done

    local rates=()
    if [ -n "${KNEE_RATES:-}" ]; then
        local previous=0
        for rate in $KNEE_RATES; do
            int "a rate in KNEE_RATES" "$rate" 1 1000000
            ((rate > previous)) || die "KNEE_RATES must ascend"
            previous=$rate
            rates+=("$rate")
        done
    else
        for rate in 1000 2000 4000 6000 8000; do
            if ((rate <= rate_max)); then rates+=("$rate"); fi
        done
        for ((rate = 10000; rate <= rate_max; rate += 2000)); do rates+=("$rate"); done
    fi
    [ ${#rates[@]} -gt 0 ] || die "no rates to sweep"
    total=$((rates[${#rates[@]} - 1] * duration))
    ((total <= 100000000)) || die "the last step would be $total operations: bench takes at most 100,000,000"

    local dir="$out/knee-$stamp" svg=${KNEE_SVG:-docs/knee.svg}
    mkdir -p "$dir"
    echo "knee: sweeping ${phases[*]} at ${rates[*]} ops/s, $duration s a step, $concurrency connections," \
        "pass: p99 <= $p99_limit ms and no errors; into $dir/" >&2
    local steps=()
    for phase in "${phases[@]}"; do
        fails=0
        printf '\n%-8s %8s %10s %6s %9s %9s %9s %8s  %s\n' phase rate "ops/s" "done" "p50 ms" "p99 ms" "max ms" errors result
        for rate in "${rates[@]}"; do
            start_appliance "$bin" "$work"
            json="$dir/$phase-$rate.json"
            if ! "$bin" bench --base "$base" --phase "$phase" --rate "$rate" --duration "$duration" \
                --total $((rate * duration)) --concurrency "$concurrency" \
                --secret-file "$work/data/webhook-secret" --json "$json" >"$dir/$phase-$rate.out" 2>&1; then
                echo "knee: bench failed at $phase $rate/s; its output:" >&2
                cat "$dir/$phase-$rate.out" >&2
                server_log_tail
                exit 1
            fi
            stop_appliance
            row=$(python3 - "$json" "$phase" "$rate" "$duration" "$p99_limit" <<'PY'
import json, sys
path, name, rate, duration, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
phase = next(p for p in json.load(open(path))["phases"] if p["phase"] == name)
errors = sum(phase["errors"].values()) if isinstance(phase["errors"], dict) else phase["errors"]
passed = phase["ok"] > 0 and errors == 0 and phase["p99_ms"] <= limit
done = (phase["ok"] + errors) / (rate * duration) * 100
print(f"{name:<8} {rate:>8} {phase['throughput']:>10,.0f} {done:>5.0f}% {phase['p50_ms']:>9.2f} "
      f"{phase['p99_ms']:>9.2f} {phase['max_ms']:>9.2f} {errors:>8}  {'pass' if passed else 'FAIL'}")
for kind, n in (phase["errors"] if isinstance(phase["errors"], dict) else {}).items():
    print(f"{'':<8} {'':>8}   error: {kind}: {n}")
PY
)
            echo "$row"
            steps+=("$phase:$rate:$json")
            if [[ "$(head -n 1 <<<"$row")" == *FAIL ]]; then
                fails=$((fails + 1))
                ((fails < 2)) || break
            fi
        done
    done

    echo
    python3 - "$dir/summary.json" "$stamp" "$duration" "$concurrency" "$p99_limit" "$rate_max" "${steps[@]}" <<'PY'
import json, sys
out, stamp, duration, concurrency, limit, rate_max = sys.argv[1:7]
duration, concurrency, limit, rate_max = int(duration), int(concurrency), float(limit), int(rate_max)
phases, machine, version = {}, None, None
for step in sys.argv[7:]:
    name, rate, path = step.split(":", 2)
    report = json.load(open(path))
    machine, version = machine or report.get("machine"), version or report.get("tigerfans_version")
    p = next(p for p in report["phases"] if p["phase"] == name)
    errors = p["errors"] if isinstance(p["errors"], dict) else {"errors": p["errors"]}
    n_errors = sum(errors.values())
    phases.setdefault(name, {"steps": []})["steps"].append({
        "rate": int(rate),
        "offered": int(rate) * duration,
        "ok": p["ok"],
        "achieved": p["throughput"],
        "p50_ms": p["p50_ms"],
        "p99_ms": p["p99_ms"],
        "max_ms": p["max_ms"],
        "errors": n_errors,
        "errors_by_kind": errors,
        "passed": p["ok"] > 0 and n_errors == 0 and p["p99_ms"] <= limit,
        "json": path.rsplit("/", 1)[-1],
    })
for name, data in phases.items():
    knee, failed = None, False
    for s in data["steps"]:
        if not s["passed"]:
            failed = True
            break
        knee = s["rate"]
    data["knee"] = knee
    # No step failed: the knee lies beyond the sweep, and `knee` is only its lower bound.
    data["knee_found"] = failed and knee is not None
    data["all_passed"] = not failed
summary = {
    "stamp": stamp,
    "date": f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]}",
    "machine": machine,
    "tigerfans_version": version,
    "settings": {"duration_s": duration, "concurrency": concurrency, "p99_limit_ms": limit, "rate_max": rate_max,
                 "pass": "p99 <= p99_limit_ms and no errors", "load": "open loop (bench --rate), a fresh appliance per step"},
    "phases": phases,
}
json.dump(summary, open(out, "w"), indent=2)
if machine:
    print(f"machine: {machine.get('cores')} cores, {machine.get('cpu_model')}; tigerfans {version}")
for name, data in phases.items():
    if data["knee"] is None:
        print(f"knee of {name}: below {data['steps'][0]['rate']:,} ops/s (the first step failed)")
    elif data["all_passed"]:
        print(f"knee of {name}: above {data['knee']:,} ops/s (every step up to it passed)")
    else:
        print(f"knee of {name}: {data['knee']:,} ops/s (p99 <= {limit:g} ms, no errors)")
print(f"summary: {out}")
PY
    python3 scripts/knee_chart.py sweep "$dir/summary.json" "$svg" ||
        { echo "knee: the chart could not be drawn; the figures are in $dir/" >&2; exit 1; }
}

# ---------------------------------------------------------------------------------------------

# paced NAME RATE SECONDS CONNECTIONS: one open-loop bench of the overload's $phase against
# $base, its report in $dir/NAME.json and its output in $dir/NAME.out.
paced() {
    "$bin" bench --base "$base" --phase "$phase" --rate "$2" --duration "$3" --total $(($2 * $3)) \
        --concurrency "$4" --secret-file "$work/data/webhook-secret" --json "$dir/$1.json" >"$dir/$1.out" 2>&1
}
overload() {
    [ $# -ge 1 ] && [ $# -le 2 ] || usage
    local knee=$1 phase=${2:-checkout}
    int KNEE_RATE "$knee" 2 1000000
    check_phase "$phase"
    local bg_s=${KNEE_OVERLOAD_BACKGROUND_S:-95} delay=${KNEE_OVERLOAD_RUSH_DELAY_S:-5}
    local rush_s=${KNEE_OVERLOAD_RUSH_S:-60} rush_concurrency=${KNEE_RUSH_CONCURRENCY:-$concurrency}
    int KNEE_OVERLOAD_BACKGROUND_S "$bg_s" 3 3600
    int KNEE_OVERLOAD_RUSH_DELAY_S "$delay" 0 600
    int KNEE_OVERLOAD_RUSH_S "$rush_s" 1 3600
    int KNEE_RUSH_CONCURRENCY "$rush_concurrency" 1 16384
    ((delay + rush_s + 2 <= bg_s)) ||
        die "the rush ($delay s + $rush_s s) must end at least 2 s before the background load ($bg_s s)"
    ((concurrency + rush_concurrency <= 4096)) ||
        die "KNEE_CONCURRENCY + KNEE_RUSH_CONCURRENCY = $((concurrency + rush_concurrency)): the appliance takes 4096 connections"
    local bg_rate=$((knee / 2)) rush_rate=$((knee * 2))
    ((rush_rate * rush_s <= 100000000 && bg_rate * bg_s <= 100000000)) || die "more than 100,000,000 operations for one bench"

    local dir="$out/overload-$stamp" svg=${KNEE_SVG:-docs/overload.svg}
    mkdir -p "$dir"
    start_appliance "$bin" "$work"
    # The replica is the server's child (appliance mode); soak.sh finds it the same way.
    local replica
    replica=$(pgrep -P "$server" -x tigerbeetle | head -n 1 || true)
    [ -n "$replica" ] || { echo "knee: no replica process under tigerfans (pid $server)" >&2; exit 1; }
    echo "knee: overload of $phase against $base (tigerfans pid $server, replica pid $replica): background" \
        "$bg_rate/s for $bg_s s, rush $rush_rate/s for $rush_s s from $delay s on; into $dir/" >&2

    # Each second: the wall clock, tigerfans' and the replica's RSS (KiB; empty once gone).
    (
        while :; do
            echo "$EPOCHREALTIME $(ps -o rss= -p "$server" | tr -d ' ') $(ps -o rss= -p "$replica" | tr -d ' ')"
            sleep 1
        done
    ) >"$dir/rss-raw.txt" 2>/dev/null &
    pids+=($!)
    sleep 2 # "before" samples

    local bg_start rush_start bg_pid rush_pid bg_rc=0 rush_rc=0
    bg_start=$EPOCHREALTIME
    paced background "$bg_rate" "$bg_s" "$concurrency" &
    bg_pid=$!
    pids+=("$bg_pid")
    sleep "$delay"
    rush_start=$EPOCHREALTIME
    paced rush "$rush_rate" "$rush_s" "$rush_concurrency" &
    rush_pid=$!
    pids+=("$rush_pid")
    wait "$rush_pid" || rush_rc=$?
    wait "$bg_pid" || bg_rc=$?
    local bg_end=$EPOCHREALTIME
    sleep 3 # "after" samples
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    pids=()
    if ((bg_rc != 0 || rush_rc != 0)); then
        echo "knee: a bench process failed (background: exit $bg_rc, rush: exit $rush_rc); their output:" >&2
        tail -n 20 "$dir/background.out" "$dir/rush.out" >&2
        server_log_tail
        exit 1
    fi

    # The offline audit reads the store file, which one process may hold: the server stopped.
    stop_appliance
    cp "$work/tigerfans.log" "$dir/tigerfans.log"
    local audit_rc=0
    "$bin" audit --data-dir "$work/data" --tigerbeetle-bin tools/bin/tigerbeetle >"$dir/audit.txt" 2>&1 || audit_rc=$?

    python3 - "$dir" "$phase" "$knee" "$bg_rate" "$bg_s" "$rush_rate" "$rush_s" "$delay" \
        "$bg_start" "$rush_start" "$bg_end" "$p99_limit" "$audit_rc" "$stamp" <<'PY'
import json, math, sys
(d, name, knee, bg_rate, bg_s, rush_rate, rush_s, delay, bg_start, rush_start, bg_end, limit, audit_rc,
 stamp) = sys.argv[1:]
knee, bg_rate, bg_s, rush_rate, rush_s, delay = map(int, (knee, bg_rate, bg_s, rush_rate, rush_s, delay))
bg_start, rush_start, bg_end, limit, audit_rc = float(bg_start), float(rush_start), float(bg_end), float(limit), int(audit_rc)

def phase(path):
    report = json.load(open(path))
    return report, next(p for p in report["phases"] if p["phase"] == name)

bg_report, bg = phase(f"{d}/background.json")
_, rush = phase(f"{d}/rush.json")
def n_errors(p):
    return sum(p["errors"].values()) if isinstance(p["errors"], dict) else p["errors"]
offset = rush_start - bg_start  # the rush's second 0 in the background load's seconds
rush_end = offset + rush_s

print(f"\nrush: {rush_rate:,}/s for {rush_s} s (2 x the knee {knee:,}/s), {rush_rate * rush_s:,} due, "
      f"{rush['ok'] + n_errors(rush):,} answered: {rush['ok']:,} ok ({rush['throughput']:,.0f}/s), "
      f"p50 {rush['p50_ms']:.2f} ms, p99 {rush['p99_ms']:.2f} ms of the ok ones")
for kind, n in sorted((rush["errors"] if isinstance(rush["errors"], dict) else {}).items(), key=lambda kv: -kv[1]):
    print(f"  {kind}: {n:,}")
print(f"background: {bg_rate:,}/s for {bg_s} s, {bg['ok']:,} ok, {n_errors(bg):,} errors "
      f"{json.dumps(bg['errors']) if n_errors(bg) else ''}, p50 {bg['p50_ms']:.2f} ms, p99 {bg['p99_ms']:.2f} ms")

recovery, recovered_at = None, None
timeline = bg.get("timeline")
rush_timeline = {s["t_s"]: s for s in rush.get("timeline") or []}
if timeline is None or "timeline" not in rush:
    print("\nno per-second timeline in the bench JSON (a tigerfans built before it): no recovery time, no chart")
else:
    print(f"\nper second of the background load (the rush from {offset:.1f} s to {rush_end:.1f} s):")
    print(f"{'t_s':>4} {'ok':>7} {'errors':>7} {'p50 ms':>9} {'p99 ms':>9}   {'rush ok':>8} {'rush err':>8}")
    for s in timeline:
        r = rush_timeline.get(s["t_s"] - round(offset))
        rush_cols = f"{r['ok']:>8} {r['errors']:>8}" if r else ""
        mark = " <" if s["t_s"] + 1 > offset and s["t_s"] < rush_end else ""  # the second overlaps the rush
        print(f"{s['t_s']:>4} {s['ok']:>7} {s['errors']:>7} {s['p50_ms']:>9.2f} {s['p99_ms']:>9.2f}   {rush_cols}{mark}")
    # A good second: answers, none failed, p99 within the limit. The load's own last, partial
    # second (its stragglers after --duration) does not count either way.
    seconds = [s for s in timeline if s["t_s"] < bg_s]
    good = lambda s: s["ok"] > 0 and s["errors"] == 0 and s["p99_ms"] <= limit
    after = [s for s in seconds if s["t_s"] >= math.floor(rush_end)]
    first_good = None
    for i, s in enumerate(after):
        if all(good(x) for x in after[i:]):
            first_good = s["t_s"]
            break
    if first_good is None:
        print(f"\nrecovery: NOT within the background load (its p99 stayed above {limit:g} ms or it had errors "
              f"up to its end, {bg_s - rush_end:.0f} s after the rush)")
    else:
        recovery, recovered_at = round(max(0.0, first_good - rush_end), 1), first_good
        print(f"\nrecovery: {recovery:.1f} s after the rush ended (the background load's p99 <= {limit:g} ms "
              f"with no errors from its second {first_good} to its end)")

# RSS: before the load, its peak while the load ran, after it.
samples = []
for line in open(f"{d}/rss-raw.txt"):
    f = line.split()
    if len(f) == 3:
        samples.append((float(f[0]) - bg_start, int(f[1]), int(f[2])))
with open(f"{d}/rss.tsv", "w") as out:
    out.write("t_s\ttigerfans_kib\treplica_kib\n")
    for t, a, b in samples:
        out.write(f"{t:.1f}\t{a}\t{b}\n")
def mib(kib):
    return f"{kib / 1024:,.0f} MiB"
before = [s for s in samples if s[0] < 0]
during = [s for s in samples if 0 <= s[0] <= bg_end - bg_start]
later = [s for s in samples if s[0] > bg_end - bg_start]
rss = {}
for label, group, pick in (("before", before, lambda g: g[-1]), ("after", later, lambda g: g[-1])):
    if group:
        rss[label] = {"tigerfans_kib": pick(group)[1], "replica_kib": pick(group)[2]}
if during:
    rss["peak"] = {"tigerfans_kib": max(s[1] for s in during), "replica_kib": max(s[2] for s in during)}
print("\nRSS (ps, each second):  tigerfans   replica")
for label in ("before", "peak", "after"):
    if label in rss:
        print(f"  {label:<20} {mib(rss[label]['tigerfans_kib']):>10} {mib(rss[label]['replica_kib']):>9}")

audit = {0: "passed", 1: "FAILED (a mismatch: see audit.txt)", 2: "could not be made (see audit.txt)"}.get(
    audit_rc, f"exit {audit_rc} (see audit.txt)")
print(f"\noffline audit of the data dir, the server stopped: {audit}")
meta = {
    "stamp": stamp, "date": f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]}", "machine": bg_report.get("machine"),
    "tigerfans_version": bg_report.get("tigerfans_version"), "phase": name, "knee_rate": knee,
    "background_rate": bg_rate, "background_s": bg_s, "rush_rate": rush_rate, "rush_s": rush_s,
    "rush_delay_s": delay, "rush_offset_s": round(offset, 3), "p99_limit_ms": limit,
    "recovery_s": recovery, "recovered_at_s": recovered_at, "rss": rss,
    "rush": {"ok": rush["ok"], "errors": rush["errors"], "throughput": rush["throughput"]},
    "background": {"ok": bg["ok"], "errors": bg["errors"], "p99_ms": bg["p99_ms"]},
    "audit": {0: "passed", 1: "failed", 2: "not made"}.get(audit_rc, "error"),
}
json.dump(meta, open(f"{d}/meta.json", "w"), indent=2)
print(f"saved in {d}/")
PY
    rm -f "$dir/rss-raw.txt"
    if python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["phases"][0]; sys.exit("timeline" not in p)' "$dir/background.json"; then
        python3 scripts/knee_chart.py overload "$dir" "$svg" ||
            { echo "knee: the chart could not be drawn; the figures are in $dir/" >&2; exit 1; }
    fi
    case $audit_rc in
    0) ;;
    2) exit 2 ;;
    *) exit 1 ;;
    esac
}

"$command" "$@"
