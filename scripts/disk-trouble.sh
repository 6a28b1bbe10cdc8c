#!/usr/bin/env bash
# Disk trouble: the store's disk fills up, then turns read-only, under a running server.
# Checkouts must answer 503 with a clear detail (never 500, never a hang), nothing acknowledged
# may be lost or corrupted, and service must resume by itself once the disk is usable again.
#
# The store lives on a small ext4 file system of its own (a loop device), so "full" is real
# ENOSPC. "Read-only" is the store's files (tigerfans.redb and its redo log tigerfans.redo) made
# immutable (chattr +i): every write, even through
# the file descriptors the server already holds, then fails with EPERM, as on a file system
# remounted read-only (which Linux refuses while files are open for writing). TigerBeetle runs
# on the normal disk. Needs root (losetup, mount, chattr): `make test` runs it when it is root.
#
# Usage: scripts/disk-trouble.sh [path/to/tigerfans]   (default target/debug/tigerfans)
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-target/debug/tigerfans}
tigerbeetle=tools/bin/tigerbeetle
[ -x "$bin" ] || { echo "disk-trouble: $bin missing (cargo build first)" >&2; exit 2; }
[ -x "$tigerbeetle" ] || { echo "disk-trouble: $tigerbeetle missing (scripts/bootstrap.sh)" >&2; exit 2; }
if [ "$(id -u)" -ne 0 ]; then
    echo "disk-trouble: needs root (losetup, mount, chattr): re-running with sudo" >&2
    exec sudo "$0" "$bin"
fi
for tool in curl losetup mkfs.ext4 chattr fallocate; do
    command -v "$tool" >/dev/null || { echo "disk-trouble: $tool missing" >&2; exit 2; }
done

work=$(mktemp -d /tmp/tigerfans-disk.XXXXXX)
store="$work/store"
mkdir -p "$store"
loop=""
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    chattr -i "$store/tigerfans.redb" "$store/tigerfans.redo" 2>/dev/null || true
    if mountpoint -q "$store"; then umount "$store" || true; fi
    [ -z "$loop" ] || losetup -d "$loop" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

pass=0
fail=0
check() { # check NAME CONDITION...
    local name=$1
    shift
    if "$@"; then
        pass=$((pass + 1))
        echo "  ok   $name"
    else
        fail=$((fail + 1))
        echo "  FAIL $name"
    fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# TigerBeetle on the normal disk.
tb_port=$(free_port)
"$tigerbeetle" format --cluster=0 --replica=0 --replica-count=1 "$work/0_0.tigerbeetle" 2>/dev/null
"$tigerbeetle" start --addresses="127.0.0.1:$tb_port" --cache-grid=64MiB "$work/0_0.tigerbeetle" 2>"$work/tigerbeetle.log" &
pids+=($!)

# The store on a 32 MiB file system of its own.
truncate -s 32M "$work/disk.img"
mkfs.ext4 -q -m 0 "$work/disk.img"
loop=$(losetup -f --show "$work/disk.img")
mount "$loop" "$store"

port=$(free_port)
base="http://127.0.0.1:$port"
cat >"$work/event.json" <<EOF
{"ledger": 77, "currency": "EUR", "goodie_limit": 10, "hold_timeout_s": 600,
 "webhook_secret": "disk-trouble-secret",
 "classes": [{"id": "A", "name": "Standing", "price_cents": 3500, "capacity": 1000000}]}
EOF
"$bin" serve --data-dir "$store" --config "$work/event.json" --tb-addresses "127.0.0.1:$tb_port" \
    --listen "127.0.0.1:$port" --tb-timeout-ms 3000 2>"$work/tigerfans.log" &
server=$!
pids+=("$server")
for _ in $(seq 1 300); do
    curl -fsS "$base/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done

acked="$work/acked"
# The order id of the last answer, on a line of its own (the JSON ends without a newline).
order_of_reply() { grep -o '"order_id":"[0-9a-f]*"' "$work/reply" | cut -d'"' -f4; }
: >"$acked"
# checkout N: N checkouts; prints "200 503 ..." counts; appends acknowledged order ids to $acked.
checkout() {
    local n=$1 i code
    for i in $(seq 1 "$n"); do
        code=$(curl -sS -m 10 -o "$work/reply" -w '%{http_code}' -H 'content-type: application/json' \
            -d "{\"cls\":\"A\",\"customer_email\":\"disk$i@example.com\"}" "$base/api/checkout" || echo 000)
        echo "$code" >>"$work/codes"
        if [ "$code" = 200 ]; then
            order_of_reply >>"$acked"
        else
            cp "$work/reply" "$work/last-error"
        fi
    done
}
codes() { sort "$work/codes" | uniq -c | awk '{printf "%s×%s ", $2, $1}'; }
only_200_503() { ! grep -qv '^\(200\|503\)$' "$work/codes"; }
saw_503() { grep -q '^503$' "$work/codes"; }
detail_says() { grep -q "$1" "$work/last-error"; }
resumes() { # up to 20 s for a 200
    local i code
    for i in $(seq 1 200); do
        code=$(curl -sS -m 10 -o "$work/reply" -w '%{http_code}' -H 'content-type: application/json' \
            -d '{"cls":"A","customer_email":"back@example.com"}' "$base/api/checkout" || echo 000)
        if [ "$code" = 200 ]; then
            order_of_reply >>"$acked"
            echo "    resumed after $((i / 10)).$((i % 10)) s"
            return 0
        fi
        sleep 0.1
    done
    return 1
}

echo "disk trouble: store on $loop ($store), server $base"
: >"$work/codes"
checkout 20
check "healthy disk: 20 checkouts answered 200 ($(codes))" test "$(grep -c '^200$' "$work/codes")" -eq 20

echo "-- the disk fills up"
fallocate -l "$(($(df --output=avail -B1 "$store" | tail -1) - 4096))" "$store/filler" 2>/dev/null ||
    dd if=/dev/zero of="$store/filler" bs=1M status=none 2>/dev/null || true
: >"$work/codes"
checkout 300
echo "    answers: $(codes)"
check "full disk: only 200 or 503" only_200_503
check "full disk: checkouts get 503" saw_503
check "full disk: the detail says why" detail_says "store"
echo "    detail: $(cat "$work/last-error" 2>/dev/null)"
check "server still up" kill -0 "$server"
rm -f "$store/filler"
check "space freed: service resumes" resumes

echo "-- the store turns read-only"
chattr +i "$store/tigerfans.redb" "$store/tigerfans.redo"
: >"$work/codes"
checkout 50
echo "    answers: $(codes)"
check "read-only store: only 200 or 503" only_200_503
check "read-only store: checkouts get 503" saw_503
check "read-only store: the detail says why" detail_says "store"
echo "    detail: $(cat "$work/last-error" 2>/dev/null)"
check "server still up" kill -0 "$server"
chattr -i "$store/tigerfans.redb" "$store/tigerfans.redo"
check "writable again: service resumes" resumes

echo "-- nothing acknowledged is lost or corrupted"
missing=0
while read -r order; do
    [ -n "$order" ] || continue
    curl -fsS -m 10 "$base/api/orders/$order" >/dev/null || missing=$((missing + 1))
done <"$acked"
check "all $(wc -l <"$acked") acknowledged orders readable" test "$missing" -eq 0
kill -TERM "$server"
wait "$server" || true
if "$bin" audit --data-dir "$store" --config "$work/event.json" --tb-addresses "127.0.0.1:$tb_port" >"$work/audit" 2>&1; then
    audit_ok=true
else
    audit_ok=false
fi
sed 's/^/    /' "$work/audit"
check "audit passes after a clean restart of the store" $audit_ok

echo "disk trouble: $pass passed, $fail failed"
[ "$fail" -eq 0 ] || { echo "server log:"; tail -30 "$work/tigerfans.log"; exit 1; }
