# Sourced by scripts/bench.sh and scripts/soak.sh: starts a fresh appliance for a measurement.
#
# start_appliance BIN WORKDIR [SERVE_ARG...]: starts `BIN serve --accounting-endpoints` (its own replica; the
# benchmark's reserve and commit phases need those endpoints) on a free port with a fresh
# data dir WORKDIR/data and any further serve arguments (e.g. --tb-profile small), its log in WORKDIR/tigerfans.log, and waits until /healthz answers (at
# most 60 s). Sets `server` (the pid) and `base` (http://127.0.0.1:PORT). If the appliance stops
# or never becomes healthy, prints its log and exits 1.
# stop_appliance: stops it (SIGTERM: a clean shutdown) and waits; does nothing if none runs.

server=
base=

start_appliance() {
    local bin=$1 work=$2 port
    shift 2
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    base="http://127.0.0.1:$port"
    rm -rf "$work/data"
    "$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" --tigerbeetle-bin tools/bin/tigerbeetle \
        --accounting-endpoints "$@" \
        2>"$work/tigerfans.log" &
    server=$!
    for _ in $(seq 1 600); do
        if curl -fsS "$base/healthz" >/dev/null 2>&1; then return 0; fi
        kill -0 "$server" 2>/dev/null || break
        sleep 0.1
    done
    echo "the appliance did not become healthy; its log:" >&2
    cat "$work/tigerfans.log" >&2
    stop_appliance
    exit 1
}

stop_appliance() {
    if [ -n "$server" ]; then
        kill -TERM "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
        server=
    fi
}
