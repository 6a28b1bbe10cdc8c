#!/usr/bin/env bash
# Tests the Raspberry Pi packaging without building anything and without a running systemd:
#   (a) systemd-analyze verify on both units (any output is a failure),
#   (b) systemd-analyze security --offline=yes on both units (prints the exposure; never fails on it),
#   (c) install.sh in a temporary root (TIGERFANS_INSTALL_ROOT) with stub binaries: install twice,
#       upgrade, TigerBeetle version guard, uninstall, uninstall --purge,
#   (d) zig-wrapper.sh with a fake Zig.
# Optional: TIGERFANS_BIN=/path/to/tigerfans also validates the generated config with check-config
# (default: target/release/tigerfans when it exists).
# The last line is "N passed, M failed"; the exit status is non-zero on any failure.
# Many checks run `bash -c '...$1...' _ ARG` on purpose:
# shellcheck disable=SC2016
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/tigerfans-packaging.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
pass() { passed=$((passed + 1)); printf 'ok    %s\n' "$1"; }
fail() {
    failed=$((failed + 1))
    printf 'FAIL  %s\n' "$1"
    if [ -n "${2:-}" ]; then printf '%s\n' "$2" | sed 's/^/      | /'; fi
}
# check DESCRIPTION COMMAND...: pass when the command succeeds (its stderr is shown on failure).
check() {
    local desc="$1"
    shift
    if "$@" 2>"$tmp/check.err"; then pass "$desc"; else fail "$desc" "$(cat "$tmp/check.err")"; fi
}
# config_sums: checksums of the files install.sh must create once and never change ("" if any is missing).
config_sums() {
    local out
    out="$(cd "$root/etc/tigerfans" 2>/dev/null && sha256sum event.toml admin-password tigerbeetle.env tigerfans.env cluster.env 2>/dev/null)" || return 0
    printf '%s' "$out"
}
section() { printf '\n== %s\n' "$1"; }
mode_of() { stat -c '%a' "$1" 2>/dev/null; }

units=(tigerbeetle.service tigerfans.service)

# --- stub bundle, laid out like the real one -------------------------------------------------
bundle="$tmp/bundle"
mkdir -p "$bundle/bin" "$bundle/systemd"
write_stub_tigerfans() {
    printf '#!/bin/sh\n# stub tigerfans %s\necho "tigerfans stub %s"\n' "$1" "$1" >"$bundle/bin/tigerfans"
    chmod 0755 "$bundle/bin/tigerfans"
}
write_stub_tigerbeetle() {
    printf '#!/bin/sh\n[ "$1" = version ] && echo "TigerBeetle version %s"\nexit 0\n' "$1" >"$bundle/bin/tigerbeetle"
    chmod 0755 "$bundle/bin/tigerbeetle"
}
write_sums() { (cd "$bundle" && sha256sum bin/tigerfans bin/tigerbeetle systemd/*.service install.sh event.toml README.md >SHA256SUMS); }
write_stub_tigerfans 1
write_stub_tigerbeetle "0.16.78+stub"
cp "$repo/systemd/tigerbeetle.service" "$repo/systemd/tigerfans.service" "$bundle/systemd/"
cp "$repo/cross/install.sh" "$bundle/install.sh"
chmod 0755 "$bundle/install.sh"
cp "$repo/cross/event.toml" "$bundle/event.toml"
cp "$repo/cross/OPERATOR.md" "$bundle/README.md"
write_sums

# =============================================================================================
section "(a) systemd-analyze verify"
if ! command -v systemd-analyze >/dev/null 2>&1; then
    fail "systemd-analyze is installed (apt-get install systemd)"
else
    printf '      %s\n' "$(systemd-analyze --version | head -n 1)"
    # verify checks that ExecStart*= binaries exist and that dependencies resolve. Preferred: a
    # temporary root holding the system's own units, the two units as installed, and stub
    # executables (--root=). Fallback for a systemd without --root: copies of the units with
    # /usr/local/bin rewritten to a stub directory.
    vroot="$tmp/vroot"
    mkdir -p "$vroot/usr/lib/systemd" "$vroot/etc/systemd/system" "$vroot/usr/local/bin" "$vroot/bin"
    for dir in /usr/lib/systemd/system /lib/systemd/system; do
        if [ -d "$dir" ]; then cp -a "$dir" "$vroot/usr/lib/systemd/"; break; fi
    done
    for exe in "$vroot/bin/sh" "$vroot/usr/local/bin/tigerbeetle" "$vroot/usr/local/bin/tigerfans"; do
        printf '#!/bin/sh\n' >"$exe"
        chmod 0755 "$exe"
    done
    printf '[Unit]\nDescription=probe\n[Service]\nExecStart=/usr/local/bin/tigerfans\n' \
        >"$vroot/etc/systemd/system/tigerfans-probe.service"
    if [ -z "$(systemd-analyze verify --root="$vroot" tigerfans-probe.service 2>&1)" ]; then
        rm -f "$vroot/etc/systemd/system/tigerfans-probe.service"
        cp "$repo/systemd/tigerbeetle.service" "$repo/systemd/tigerfans.service" "$vroot/etc/systemd/system/"
        verify() { systemd-analyze verify --root="$vroot" "$@" 2>&1; }
        printf '      using --root=%s\n' "$vroot"
    else
        stubs="$tmp/stubs"
        mkdir -p "$stubs" "$tmp/units"
        cp "$vroot/usr/local/bin/tigerbeetle" "$vroot/usr/local/bin/tigerfans" "$stubs/"
        for unit in "${units[@]}"; do
            sed "s#/usr/local/bin/#$stubs/#g" "$repo/systemd/$unit" >"$tmp/units/$unit"
        done
        verify() {
            local args=() u
            for u in "$@"; do args+=("$tmp/units/$u"); done
            (cd "$tmp/units" && systemd-analyze verify "${args[@]}" 2>&1)
        }
        printf '      --root unsupported: verifying copies with ExecStart paths rewritten to %s\n' "$stubs"
    fi

    out="$(verify "${units[@]}")"
    rc=$?
    if [ "$rc" -eq 0 ] && [ -z "$out" ]; then
        pass "verify ${units[*]}: no warnings, no errors"
    else
        fail "verify ${units[*]} (exit $rc)" "$out"
    fi

    # Self-test: the same check must notice a broken unit.
    bad="tigerfans-broken.service"
    if [ -d "$vroot/etc/systemd/system" ] && [ -f "$vroot/etc/systemd/system/tigerfans.service" ]; then
        sed 's/^Restart=on-failure$/Restart=on-failure\nRestartt=always/' "$repo/systemd/tigerfans.service" \
            >"$vroot/etc/systemd/system/$bad"
    else
        sed 's/^Restart=on-failure$/Restart=on-failure\nRestartt=always/' "$tmp/units/tigerfans.service" >"$tmp/units/$bad"
    fi
    out="$(verify "$bad")"
    if [ -n "$out" ]; then
        pass "verify reports a misspelled key (self-test)"
    else
        fail "verify reports a misspelled key (self-test): it printed nothing"
    fi
    rm -f "$vroot/etc/systemd/system/$bad" "$tmp/units/$bad"
fi

# =============================================================================================
section "(b) systemd-analyze security --offline=yes"
if command -v systemd-analyze >/dev/null 2>&1 && systemd-analyze --help 2>&1 | grep -q -- '--offline'; then
    for unit in "${units[@]}"; do
        out="$(systemd-analyze security --offline=yes "$repo/systemd/$unit" 2>&1)"
        rc=$?
        score="$(printf '%s\n' "$out" | grep -i 'overall exposure level' | sed 's/^[^A-Za-z]*//')"
        if [ -n "$score" ]; then
            pass "security $unit: $score"
        else
            fail "security --offline=yes $unit (exit $rc)" "$out"
        fi
    done
else
    printf '      skipped: this systemd-analyze has no --offline\n'
fi

# =============================================================================================
section "(c) install.sh in a temporary root"
root="$tmp/root"
run_install() { TIGERFANS_INSTALL_ROOT="$root" bash "$bundle/install.sh" "$@" >"$tmp/install.log" 2>&1; }
install_log() { cat "$tmp/install.log"; }

if run_install; then pass "first install exits 0"; else fail "first install exits 0" "$(install_log)"; fi
check "prints the shop URL and where the password is" \
    grep -q 'http://.*/' "$tmp/install.log"
check "... and the admin-password path" grep -q '/etc/tigerfans/admin-password' "$tmp/install.log"

for name in tigerfans tigerbeetle; do
    f="$root/usr/local/bin/$name"
    check "binary $name installed, executable, identical" \
        bash -c '[ -x "$1" ] && cmp -s "$1" "$2"' _ "$f" "$bundle/bin/$name"
done
for unit in "${units[@]}"; do
    check "unit $unit installed (0644, identical)" \
        bash -c '[ "$(stat -c %a "$1")" = 644 ] && cmp -s "$1" "$2"' _ "$root/etc/systemd/system/$unit" "$repo/systemd/$unit"
done
check "operator notes installed" test -f "$root/usr/local/share/doc/tigerfans/README.md"
check "/etc/tigerfans is 0750" test "$(mode_of "$root/etc/tigerfans")" = 750

config="$root/etc/tigerfans/event.toml"
password_file="$root/etc/tigerfans/admin-password"
check "event.toml created with mode 0640" test "$(mode_of "$config")" = 640
check "event.toml has no placeholder left" bash -c '[ -f "$1" ] && ! grep -q __GENERATED_ "$1"' _ "$config"
secret="$(sed -n 's/^webhook_secret = "\([^"]*\)".*/\1/p' "$config" 2>/dev/null)"
password="$(sed -n 's/^admin_password = "\([^"]*\)".*/\1/p' "$config" 2>/dev/null)"
check "webhook_secret generated (48 hex characters)" bash -c '[[ "$1" =~ ^[0-9a-f]{48}$ ]]' _ "$secret"
check "admin_password generated (20 hex characters)" bash -c '[[ "$1" =~ ^[0-9a-f]{20}$ ]]' _ "$password"
check "admin-password file has mode 0600" test "$(mode_of "$password_file")" = 600
check "admin-password file holds the config's password" \
    bash -c '[ -n "$2" ] && [ "$(cat "$1")" = "$2" ]' _ "$password_file" "$password"
check "rest of event.toml is the bundle's default" \
    bash -c 'diff <(grep -v -e ^webhook_secret -e ^admin_password "$1") <(grep -v -e ^webhook_secret -e ^admin_password "$2") >/dev/null' \
    _ "$config" "$bundle/event.toml"
if command -v python3 >/dev/null 2>&1 && python3 -c 'import tomllib' 2>/dev/null; then
    check "event.toml parses as TOML with the expected fields" python3 - "$config" <<'EOF'
import sys, tomllib
c = tomllib.load(open(sys.argv[1], "rb"))
expected = {"event_name", "event_date", "event_tagline", "ledger", "currency", "classes", "goodie_limit",
            "hold_timeout_s", "webhook_secret", "admin_user", "admin_password", "accounting_endpoints", "mockpay"}
assert set(c) == expected, set(c) ^ expected
assert c["accounting_endpoints"] is False, "the bare accounting endpoints are off at a real event"
assert isinstance(c["mockpay"], bool), "the operator sees the MockPay switch (false for a real event)"
assert len(c["webhook_secret"].encode()) >= 8
assert [k["id"] for k in c["classes"]] == ["A", "B"]
assert all(set(k) == {"id", "name", "price_cents", "capacity"} for k in c["classes"])
EOF
fi
tigerfans_bin="${TIGERFANS_BIN:-$repo/target/release/tigerfans}"
if [ -x "$tigerfans_bin" ]; then
    check "tigerfans check-config accepts the generated config" \
        bash -c '"$1" check-config "$2" >/dev/null 2>&1' _ "$tigerfans_bin" "$config"
else
    printf '      (no tigerfans binary at %s: check-config skipped)\n' "$tigerfans_bin"
fi
check "tigerbeetle.env names a memory profile and its start flags" \
    bash -c 'grep -Eq "^TIGERFANS_TB_PROFILE=(small|medium|large)$" "$1" && grep -Eq "^TB_START_FLAGS=.*--cache-grid=[0-9]+(KiB|MiB|GiB)" "$1"' \
    _ "$root/etc/tigerfans/tigerbeetle.env"
check "both units read tigerbeetle.env; the replica starts with \$TB_START_FLAGS (split into words)" \
    bash -c 'grep -q "^EnvironmentFile=-/etc/tigerfans/tigerbeetle.env" "$1" && grep -q "^EnvironmentFile=-/etc/tigerfans/tigerbeetle.env" "$2" && grep -qF " \$TB_START_FLAGS " "$2"' \
    _ "$root/etc/systemd/system/tigerfans.service" "$root/etc/systemd/system/tigerbeetle.service"
# The board's RAM picks the profile (MemTotal of a 2, 4 and 8 GB Raspberry Pi); a profile's flags
# in install.sh are tigerfans' own (`tigerfans tb-profile`).
for board in "1893 small" "3885 medium" "7812 large"; do
    read -r board_mib board_profile <<<"$board"
    check "a board with $board_mib MiB of RAM gets the $board_profile profile" \
        bash -c 'fake="$(mktemp)"; printf "MemTotal: %s kB\n" $(($2 * 1024)) >"$fake";
            r="$(mktemp -d)"; TIGERFANS_INSTALL_ROOT="$r" TIGERFANS_MEMINFO="$fake" "$1/install.sh" >/dev/null 2>&1;
            grep -qx "TIGERFANS_TB_PROFILE=$3" "$r/etc/tigerfans/tigerbeetle.env"; ok=$?; rm -rf "$r" "$fake"; exit $ok' \
        _ "$bundle" "$board_mib" "$board_profile"
done
if [ -x "$tigerfans_bin" ]; then
    for profile in small medium large; do
        check "install.sh's $profile flags are tigerfans' own" \
            bash -c 'r="$(mktemp -d)"; TIGERFANS_INSTALL_ROOT="$r" TIGERFANS_TB_PROFILE="$3" "$1/install.sh" >/dev/null 2>&1;
                flags="$(sed -n "s/^TB_START_FLAGS=//p" "$r/etc/tigerfans/tigerbeetle.env")"; rm -rf "$r";
                [ "$flags" = "$("$2" tb-profile "$3")" ] || { echo "install.sh: $flags"; "$2" tb-profile "$3"; exit 1; }' \
            _ "$bundle" "$tigerfans_bin" "$profile"
    done
fi
check "an env file from before profiles becomes large, its grid cache kept" \
    bash -c 'r="$(mktemp -d)"; mkdir -p "$r/etc/tigerfans"; echo TB_CACHE_GRID=128MiB >"$r/etc/tigerfans/tigerbeetle.env";
        TIGERFANS_INSTALL_ROOT="$r" TIGERFANS_TB_PROFILE=small "$1/install.sh" >/dev/null 2>&1;
        grep -qx "TIGERFANS_TB_PROFILE=large" "$r/etc/tigerfans/tigerbeetle.env" && grep -qx "TB_START_FLAGS=--cache-grid=128MiB" "$r/etc/tigerfans/tigerbeetle.env"; ok=$?; rm -rf "$r"; exit $ok' \
    _ "$bundle"
check "cluster.env holds a random, non-zero cluster id" \
    bash -c 'c="$(sed -n "s/^TB_CLUSTER=//p" "$1")"; [[ "$c" =~ ^[1-9][0-9]*$ ]]' _ "$root/etc/tigerfans/cluster.env"
check "both units read the cluster id" \
    bash -c 'grep -q cluster.env "$1" && grep -q cluster.env "$2" && grep -qF -- "--tb-cluster \${TB_CLUSTER}" "$1" && grep -qF -- "--cluster=\${TB_CLUSTER}" "$2"' \
    _ "$root/etc/systemd/system/tigerfans.service" "$root/etc/systemd/system/tigerbeetle.service"
check "tigerfans.service wants the replica and does not require it (a replica restart must not stop the shop)" \
    bash -c 'grep -q "^Wants=tigerbeetle.service" "$1" && ! grep -q "^Requires=" "$1"' _ "$root/etc/systemd/system/tigerfans.service"
check "tigerfans.env created (all comments)" bash -c '[ -f "$1" ] && ! grep -qv "^#" "$1"' _ "$root/etc/tigerfans/tigerfans.env"

sums_before="$(config_sums)"
if run_install; then pass "second install exits 0"; else fail "second install exits 0" "$(install_log)"; fi
sums_after="$(config_sums)"
check "second install leaves event.toml, admin-password and the env files unchanged" \
    bash -c '[ -n "$1" ] && [ "$1" = "$2" ]' _ "$sums_before" "$sums_after"
check "second install keeps event.toml 0640 and admin-password 0600" \
    test "$(mode_of "$config") $(mode_of "$password_file")" = "640 600"
check "second install reports the config as kept" grep -q 'kept the existing' "$tmp/install.log"

# The od fallback, when openssl is missing or broken.
fakebin="$tmp/fakebin"
mkdir -p "$fakebin"
printf '#!/bin/sh\nexit 1\n' >"$fakebin/openssl"
chmod 0755 "$fakebin/openssl"
if PATH="$fakebin:$PATH" TIGERFANS_INSTALL_ROOT="$tmp/root-od" bash "$bundle/install.sh" >"$tmp/install.log" 2>&1; then
    od_secret="$(sed -n 's/^webhook_secret = "\([^"]*\)".*/\1/p' "$tmp/root-od/etc/tigerfans/event.toml" 2>/dev/null)"
    check "secrets generated with od when openssl fails" bash -c '[[ "$1" =~ ^[0-9a-f]{48}$ ]] && [ "$1" != "$2" ]' _ "$od_secret" "$secret"
else
    fail "install with a broken openssl exits 0" "$(install_log)"
fi

# Upgrade: a new tigerfans binary replaces the installed one.
write_stub_tigerfans 2
write_sums
if run_install; then pass "install of a new tigerfans exits 0"; else fail "install of a new tigerfans exits 0" "$(install_log)"; fi
check "new tigerfans binary installed" cmp -s "$root/usr/local/bin/tigerfans" "$bundle/bin/tigerfans"
check "no temporary files left in /usr/local/bin" \
    bash -c '[ -z "$(find "$1" -name "*.new.*")" ]' _ "$root/usr/local/bin"

# A different TigerBeetle version is refused unless explicitly allowed.
write_stub_tigerbeetle "0.99.0+stub"
write_sums
if run_install; then
    fail "install refuses a different TigerBeetle version"
else
    pass "install refuses a different TigerBeetle version"
fi
check "... and keeps the installed TigerBeetle" grep -q '0.16.78+stub' "$root/usr/local/bin/tigerbeetle"
if TIGERFANS_ALLOW_TB_VERSION_CHANGE=1 run_install; then
    pass "TIGERFANS_ALLOW_TB_VERSION_CHANGE=1 allows it"
else
    fail "TIGERFANS_ALLOW_TB_VERSION_CHANGE=1 allows it" "$(install_log)"
fi
check "... and installs the new TigerBeetle" grep -q '0.99.0+stub' "$root/usr/local/bin/tigerbeetle"

# A bundle that does not match its SHA256SUMS is refused.
cp "$bundle/SHA256SUMS" "$tmp/SHA256SUMS.good"
sed -i '1s/^./0/' "$bundle/SHA256SUMS"
if run_install; then fail "install refuses a bundle with a wrong checksum"; else pass "install refuses a bundle with a wrong checksum"; fi
cp "$tmp/SHA256SUMS.good" "$bundle/SHA256SUMS"

# Unknown commands and options.
TIGERFANS_INSTALL_ROOT="$root" bash "$bundle/install.sh" bogus >/dev/null 2>&1
check "unknown command exits 2" test $? -eq 2
TIGERFANS_INSTALL_ROOT="$root" bash "$bundle/install.sh" uninstall --bogus >/dev/null 2>&1
check "unknown uninstall option exits 2" test $? -eq 2

# Uninstall keeps data and config.
mkdir -p "$root/var/lib/tigerbeetle" "$root/var/lib/tigerfans"
echo data >"$root/var/lib/tigerbeetle/0_0.tigerbeetle"
echo data >"$root/var/lib/tigerfans/tigerfans.redb"
if run_install uninstall; then pass "uninstall exits 0"; else fail "uninstall exits 0" "$(install_log)"; fi
for f in usr/local/bin/tigerfans usr/local/bin/tigerbeetle etc/systemd/system/tigerbeetle.service \
    etc/systemd/system/tigerfans.service usr/local/share/doc/tigerfans; do
    check "uninstall removed /$f" test ! -e "$root/$f"
done
for f in var/lib/tigerbeetle/0_0.tigerbeetle var/lib/tigerfans/tigerfans.redb etc/tigerfans/event.toml \
    etc/tigerfans/admin-password etc/tigerfans/tigerbeetle.env; do
    check "uninstall kept /$f" test -f "$root/$f"
done
check "uninstall left the config files unchanged" \
    bash -c '[ -n "$1" ] && [ "$1" = "$2" ]' _ "$(config_sums)" "$sums_after"
if run_install uninstall; then pass "uninstall twice exits 0"; else fail "uninstall twice exits 0" "$(install_log)"; fi

# Purge removes data and config.
if run_install uninstall --purge; then pass "uninstall --purge exits 0"; else fail "uninstall --purge exits 0" "$(install_log)"; fi
for f in var/lib/tigerbeetle var/lib/tigerfans etc/tigerfans; do
    check "uninstall --purge removed /$f" test ! -e "$root/$f"
done

# =============================================================================================
section "(d) zig-wrapper.sh"
fakezig="$tmp/fakezig"
printf '#!/bin/sh\nfor a in "$@"; do printf "[%%s]\\n" "$a"; done\n' >"$fakezig"
chmod 0755 "$fakezig"
got="$(TIGERFANS_REAL_ZIG="$fakezig" "$repo/cross/zig-wrapper.sh" build clients:c -Drelease \
    -Dtarget=aarch64-linux-musl "two words" "" '-Dtarget=x86_64-linux-gnu.2.27' '*' -Dtarget=x86_64-linux-musl)"
want="$(printf '[%s]\n' build clients:c -Drelease -Dtarget=aarch64-linux "two words" "" \
    '-Dtarget=x86_64-linux-gnu.2.27' '*' -Dtarget=x86_64-linux)"
if [ "$got" = "$want" ]; then
    pass "rewrites -Dtarget=<arch>-linux-musl, passes everything else through"
else
    fail "rewrites -Dtarget=<arch>-linux-musl, passes everything else through" "$(diff <(echo "$want") <(echo "$got"))"
fi
(cd "$tmp" && TIGERFANS_REAL_ZIG="fakezig" "$repo/cross/zig-wrapper.sh" version >/dev/null 2>&1)
check "accepts a relative TIGERFANS_REAL_ZIG" test $? -eq 0
TIGERFANS_REAL_ZIG="$tmp/no-such-zig" "$repo/cross/zig-wrapper.sh" version >/dev/null 2>&1
check "fails clearly when the real Zig is missing" test $? -eq 127

if command -v shellcheck >/dev/null 2>&1; then
    section "shellcheck"
    out="$(shellcheck "$repo/cross/install.sh" "$repo/cross/zig-wrapper.sh" "$repo/cross/test-packaging.sh" 2>&1)"
    if [ -z "$out" ]; then pass "shellcheck: install.sh, zig-wrapper.sh, test-packaging.sh"; else fail "shellcheck" "$out"; fi
fi

printf '\n%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
