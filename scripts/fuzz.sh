#!/usr/bin/env bash
# Short fuzzing run of every target in fuzz/ (see fuzz/README.md).
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 20)
#
# Installs what it needs when missing (nightly toolchain, a C++ compiler for libFuzzer,
# cargo-fuzz into tools/cargo-fuzz), builds all targets once, then runs each one for
# SECONDS_PER_TARGET. The committed seeds in fuzz/corpus/<target> are read, never written:
# inputs libFuzzer finds go to fuzz/target/corpus/<target> (kept between runs, git-ignored).
# Prints one summary line per target; exits non-zero if any target crashed (the crashing input
# is in fuzz/artifacts/<target>/, the log in fuzz/target/fuzz-logs/<target>.log).
set -euo pipefail

seconds="${1:-20}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS_PER_TARGET]  (a positive integer, default 20)" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
start=$(date +%s)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! command -v c++ >/dev/null 2>&1; then
    as_root apt-get update
    as_root apt-get install -y g++
fi
if [ ! -x tools/cargo-fuzz/bin/cargo-fuzz ]; then
    cargo install cargo-fuzz --locked --root tools/cargo-fuzz
fi
export PATH="$root/tools/cargo-fuzz/bin:$PATH"

# One build of all targets; `fuzz run` below then finds them up to date.
cargo +nightly fuzz build --fuzz-dir fuzz
built=$(date +%s)
echo "fuzz: built all targets in $((built - start))s"

mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir fuzz)
if [ "${#targets[@]}" -eq 0 ]; then
    echo "fuzz: no targets in fuzz/fuzz_targets" >&2
    exit 1
fi

logs="fuzz/target/fuzz-logs"
mkdir -p "$logs"
failed=()
for target in "${targets[@]}"; do
    work="fuzz/target/corpus/$target"
    mkdir -p "$work" "fuzz/artifacts/$target"
    log="$logs/$target.log"
    t0=$(date +%s)
    status=0
    cargo +nightly fuzz run --fuzz-dir fuzz "$target" "$work" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || status=$?
    t1=$(date +%s)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    if [ -z "$execs" ]; then
        # No final stats (a crash): the last status line's count.
        execs=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#' || true)
    fi
    if [ "$status" -eq 0 ]; then
        result=ok
    else
        result="CRASH (exit $status)"
        failed+=("$target")
    fi
    printf 'fuzz: %-18s %-16s executions=%-10s seconds=%s\n' "$target" "$result" "${execs:-?}" "$((t1 - t0))"
done

echo "fuzz: total $(($(date +%s) - start))s (build $((built - start))s)"
if [ "${#failed[@]}" -gt 0 ]; then
    for target in "${failed[@]}"; do
        echo "---- $target (full log: $logs/$target.log)" >&2
        # The panic or sanitizer report, and the saved input.
        grep -E -A2 "panicked at|^==[0-9]+==ERROR|^SUMMARY:|deadly signal|out-of-memory|timeout" "$logs/$target.log" | head -n 20 >&2 || true
        grep -E "^[[:space:]]*fuzz/artifacts/" "$logs/$target.log" | sort -u >&2 || true
    done
    echo "fuzz: crashed: ${failed[*]}" >&2
    exit 1
fi
