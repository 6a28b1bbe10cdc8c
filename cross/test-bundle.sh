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
    check "$arch: tigerfans check-config accepts the bundled event.toml" ${run[@]+"${run[@]}"} "$b/bin/tigerfans" check-config "$b/event.toml"
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
"$b/bin/tigerbeetle" format --cluster=0 --replica=0 --replica-count=1 "$tmp/data/0_0.tigerbeetle" >"$tmp/format.log" 2>&1
"$b/bin/tigerbeetle" start --addresses="127.0.0.1:$tb_port" --cache-grid=64MiB "$tmp/data/0_0.tigerbeetle" >"$tmp/tb.log" 2>&1 &
pids+=($!)
"$b/bin/tigerfans" serve --listen "127.0.0.1:$http_port" --data-dir "$tmp/data" --tb-addresses "127.0.0.1:$tb_port" \
    --config "$b/event.toml" >"$tmp/tigerfans.log" 2>&1 &
server=$!
pids+=("$server")
healthy() {
    for _ in $(seq 1 600); do
        curl -fsS "http://127.0.0.1:$http_port/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    cat "$tmp/tigerfans.log"
    return 1
}
check "x86_64: bundle server becomes healthy" healthy
checkout="$(curl -fsS -X POST "http://127.0.0.1:$http_port/api/checkout" -H 'content-type: application/json' \
    -d '{"cls":"A","customer_email":"pi@example.com"}' 2>&1)"
order_id="$(printf '%s' "$checkout" | python3 -c 'import json,sys; print(json.load(sys.stdin)["order_id"])' 2>/dev/null)"
psid="$(printf '%s' "$checkout" | python3 -c 'import json,sys; print(json.load(sys.stdin)["redirect_url"].split("/")[2])' 2>/dev/null)"
check "x86_64: checkout answers an order ($checkout)" test -n "$order_id"
check "x86_64: MockPay succeeds with a 303" bash -c "curl -s -o /dev/null -w '%{http_code}' -X POST 'http://127.0.0.1:$http_port/mockpay/$psid/emit' -d t=succeeded | grep -qx 303"
check "x86_64: the order is PAID with a ticket code" bash -c "curl -fsS 'http://127.0.0.1:$http_port/api/orders/$order_id' | python3 -c 'import json,sys; o=json.load(sys.stdin); assert o[\"status\"]==\"PAID\" and o[\"ticket_code\"].startswith(\"TCK-\"), o'"
check "x86_64: the landing page is embedded" bash -c "curl -fsS 'http://127.0.0.1:$http_port/' | grep -q '<html'"
kill -TERM "$server"
check "x86_64: SIGTERM stops tigerfans cleanly" wait "$server"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
