#!/usr/bin/env bash
# Tests the bundles cross/build.sh made:
#   - both: checksums, layout, `file` says static; the config in the bundle validates;
#   - aarch64: under qemu-aarch64-static (installed from Debian if missing), everything that does
#     not open a TigerBeetle client (qemu-user has no io_uring): --version, --help, check-config
#     (good and bad), the TigerBeetle server's version;
#   - x86_64: the real thing, natively: the bundle's static tigerbeetle formats and runs a
#     replica, the bundle's static tigerfans serves against it, and a ticket is bought and paid.
# The last line is "N passed, M failed"; the exit status is non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/tigerfans-bundle.XXXXXX")"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT

passed=0
failed=0
check() {
    local desc="$1"
    shift
    if "$@" >"$tmp/out" 2>&1; then
        passed=$((passed + 1))
        printf 'ok    %s\n' "$desc"
    else
        failed=$((failed + 1))
        printf 'FAIL  %s\n' "$desc"
        sed 's/^/      | /' "$tmp/out" | tail -20
    fi
}

if ! command -v qemu-aarch64-static >/dev/null; then
    echo "[test-bundle] installing qemu-user-static (apt)" >&2
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq qemu-user-static file >/dev/null
fi

static() { file -L "$1" | grep -Eq 'statically linked|static-pie linked'; }

for arch in aarch64 x86_64; do
    name="tigerfans-$version-$arch-linux"
    tarball="dist/$name.tar.gz"
    echo "== $name"
    check "$arch: tarball exists and matches its .sha256" bash -c "cd dist && sha256sum -c --quiet $name.tar.gz.sha256"
    mkdir -p "$tmp/$arch"
    tar -C "$tmp/$arch" -xzf "$tarball" || { failed=$((failed + 1)); echo "FAIL  $arch: unpack"; continue; }
    b="$tmp/$arch/$name"
    check "$arch: SHA256SUMS inside the bundle verify" bash -c "cd '$b' && sha256sum -c --quiet SHA256SUMS"
    for f in bin/tigerfans bin/tigerbeetle systemd/tigerbeetle.service systemd/tigerfans.service install.sh event.toml README.md; do
        check "$arch: bundle has $f" test -s "$b/$f"
    done
    case "$arch" in
        aarch64) machine='ARM aarch64' ;;
        x86_64) machine='x86-64' ;;
    esac
    check "$arch: bin/tigerfans is $machine, statically linked" bash -c "file -L '$b/bin/tigerfans' | grep -q '$machine' && file -L '$b/bin/tigerfans' | grep -Eq 'statically linked|static-pie linked'"
    check "$arch: bin/tigerbeetle is $machine, statically linked" bash -c "file -L '$b/bin/tigerbeetle' | grep -q '$machine' && file -L '$b/bin/tigerbeetle' | grep -Eq 'statically linked|static-pie linked'"
    file -L "$b/bin/tigerfans" "$b/bin/tigerbeetle" | sed 's/^/      /'
    ls -l "$b/bin" | sed 's/^/      /'

    run=()
    [ "$arch" = aarch64 ] && run=(qemu-aarch64-static)
    check "$arch: tigerfans --version prints $version" bash -c "${run[*]} '$b/bin/tigerfans' --version | grep -qx 'tigerfans $version'"
    check "$arch: tigerfans --help lists serve and bench" bash -c "${run[*]} '$b/bin/tigerfans' --help | grep -q serve && ${run[*]} '$b/bin/tigerfans' --help | grep -q bench"
    # The bundled event.toml is install.sh's template: its placeholders are refused as secrets,
    # the file with them filled in (as install.sh fills them) is accepted.
    check "$arch: tigerfans check-config refuses the template's placeholders as secrets" \
        bash -c "! ${run[*]} '$b/bin/tigerfans' check-config '$b/event.toml' 2>'$tmp/placeholder.err' && grep -q placeholder '$tmp/placeholder.err'"
    sed -e "s/__GENERATED_WEBHOOK_SECRET__/$(printf '%048d' 7)/" -e "s/__GENERATED_ADMIN_PASSWORD__/bundle-test-password/" \
        "$b/event.toml" >"$tmp/event-$arch.toml"
    check "$arch: tigerfans check-config accepts the template filled in" ${run[@]+"${run[@]}"} "$b/bin/tigerfans" check-config "$tmp/event-$arch.toml"
    printf 'classes = []\n' >"$tmp/bad.toml"
    check "$arch: tigerfans check-config refuses a bad config with a reason" bash -c "! ${run[*]} '$b/bin/tigerfans' check-config '$tmp/bad.toml' 2>'$tmp/bad.err' && grep -q 'ticket class' '$tmp/bad.err'"
    check "$arch: tigerbeetle version is 0.16.78" bash -c "${run[*]} '$b/bin/tigerbeetle' version | grep -q '0.16.78'"
done

echo "== x86_64: the static bundle sells a ticket"
b="$tmp/x86_64/tigerfans-$version-x86_64-linux"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tb_port="$(free_port)"
http_port="$(free_port)"
mkdir -p "$tmp/data"
cluster=$(( $(od -An -N7 -tu8 /dev/urandom | tr -d ' ') | 1 ))
now_ms() { date +%s%3N; }
start_replica() {
    "$b/bin/tigerbeetle" start --addresses="127.0.0.1:$tb_port" --cache-grid=64MiB "$tmp/data/0_0.tigerbeetle" >>"$tmp/tb.log" 2>&1 &
    replica=$!
    pids+=("$replica")
}
# tigerfans first, with no replica yet: it must answer from its first second (503, never refused).
t0=$(now_ms)
"$b/bin/tigerfans" serve --listen "127.0.0.1:$http_port" --data-dir "$tmp/data" --tb-addresses "127.0.0.1:$tb_port" \
    --tb-cluster "$cluster" --tb-timeout-ms 1000 --config "$tmp/event-x86_64.toml" >"$tmp/tigerfans.log" 2>&1 &
server=$!
pids+=("$server")
answering() {
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "http://127.0.0.1:$http_port/healthz" && return 0
        sleep 0.05
    done
    return 1
}
healthy() {
    for _ in $(seq 1 600); do
        curl -fsS "http://127.0.0.1:$http_port/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    cat "$tmp/tigerfans.log"
    return 1
}
check "x86_64: tigerfans answers before any replica runs" answering
echo "      first answer $(( $(now_ms) - t0 )) ms after the start"
check "x86_64: while starting, /healthz is 503 and says why" \
    bash -c "curl -s -w ' %{http_code}' 'http://127.0.0.1:$http_port/healthz' | grep -q 'starting: .* 503$'"
check "x86_64: while starting, a page is a 503 that reloads itself" \
    bash -c "curl -s -w ' %{http_code}' 'http://127.0.0.1:$http_port/' | tr -d '\n' | grep -q 'http-equiv=\"refresh\".*Back in a moment.* 503$'"
t1=$(now_ms)
"$b/bin/tigerbeetle" format --cluster="$cluster" --replica=0 --replica-count=1 "$tmp/data/0_0.tigerbeetle" >"$tmp/format.log" 2>&1
start_replica
check "x86_64: bundle server becomes healthy" healthy
t2=$(now_ms)
checkout="$(curl -fsS -X POST "http://127.0.0.1:$http_port/api/checkout" -H 'content-type: application/json' \
    -d '{"cls":"A","customer_email":"pi@example.com"}' 2>&1)"
order_id="$(printf '%s' "$checkout" | python3 -c 'import json,sys; print(json.load(sys.stdin)["order_id"])' 2>/dev/null)"
psid="$(printf '%s' "$checkout" | python3 -c 'import json,sys; print(json.load(sys.stdin)["redirect_url"].split("/")[2])' 2>/dev/null)"
check "x86_64: checkout answers an order ($checkout)" test -n "$order_id"
check "x86_64: MockPay succeeds with a 303" bash -c "curl -s -o /dev/null -w '%{http_code}' -X POST 'http://127.0.0.1:$http_port/mockpay/$psid/emit' -d t=succeeded | grep -qx 303"
check "x86_64: the order is PAID with a ticket code" bash -c "curl -fsS 'http://127.0.0.1:$http_port/api/orders/$order_id' | python3 -c 'import json,sys; o=json.load(sys.stdin); assert o[\"status\"]==\"PAID\" and o[\"ticket_code\"].startswith(\"TCK-\"), o'"
check "x86_64: the landing page is embedded" bash -c "curl -fsS 'http://127.0.0.1:$http_port/' | grep -q '<html'"
echo "      healthy $(( t2 - t1 )) ms after the replica's format and start"
check "x86_64: the replica runs with the random cluster id $cluster" grep -q "$cluster" "$tmp/tb.log"

# The replica is killed (systemd would restart it; here the script does): every request in the
# gap is answered, none refused, and service comes back by itself with the order kept.
kill -KILL "$replica"
wait "$replica" 2>/dev/null || true
gap() {
    local code refused=0 answered=0
    for _ in $(seq 1 5); do
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$http_port/api/inventory")"
        if [ "$code" = 000 ]; then refused=$((refused + 1)); else answered=$((answered + 1)); fi
        [ "$code" = 503 ] || [ "$code" = 000 ] || { echo "      unexpected $code in the gap"; return 1; }
    done
    echo "      in the gap: $answered answered 503, $refused refused"
    [ "$refused" -eq 0 ]
}
check "x86_64: with the replica down, requests get 503 and none is refused" gap
t3=$(now_ms)
start_replica
check "x86_64: service comes back by itself after the replica restarts" healthy
echo "      back $(( $(now_ms) - t3 )) ms after the replica's restart"
check "x86_64: the order is still PAID" bash -c "curl -fsS 'http://127.0.0.1:$http_port/api/orders/$order_id' | grep -q '\"PAID\"'"
kill -TERM "$server"
check "x86_64: SIGTERM stops tigerfans cleanly" wait "$server"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
