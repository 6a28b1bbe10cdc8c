#!/usr/bin/env bash
# Fetches the web UI's third-party browser code from npm, pinned by web/vendor-src/package-lock.json
# (npm ci checks every tarball against the lock file's sha512), and copies it where the server
# can serve it:
#   web/vendor/jsQR.js, web/vendor/jsQR.LICENSE  the package's files as published (kept for review),
#   web/jsqr.js                                  the copy the door page loads as /static/jsqr.js
#                                                (the static route serves one path segment only).
# All three are gitignored, and must exist before `cargo build`: rust-embed compiles web/ into
# the binary. node_modules is removed again afterwards, so it is not embedded along with web/.
# Skips everything when the copies are newer than the lock file.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[vendor-web] %s\n' "$*" >&2; }

src=web/vendor-src
lock="$src/package-lock.json"
out=web/vendor
served=web/jsqr.js

if [ -f "$out/jsQR.js" ] && [ "$out/jsQR.js" -nt "$lock" ] && [ -f "$served" ] && [ "$served" -nt "$lock" ]; then
    log "web/vendor/jsQR.js is up to date; nothing to do"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    log "error: npm is not installed; it is needed once to fetch jsQR (e.g. apt-get install npm)"
    exit 1
fi

log "npm ci in $src"
# --ignore-scripts: no package code runs at install time; only the published dist file is used.
(cd "$src" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)

pkg="$src/node_modules/jsqr"
version="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$pkg/package.json" | head -n 1)"
mkdir -p "$out"
cp "$pkg/dist/jsQR.js" "$out/jsQR.js"
cp "$pkg/LICENSE" "$out/jsQR.LICENSE"
# The served copy names its origin and license in a first comment (the dist file carries none).
{
    printf '/* jsQR %s (npm jsqr), https://github.com/cozmo/jsQR. Apache License 2.0: see web/vendor/jsQR.LICENSE. */\n' "$version"
    cat "$pkg/dist/jsQR.js"
} >"$served.tmp"
mv "$served.tmp" "$served"
rm -rf "$src/node_modules"
log "jsQR $version -> $out/jsQR.js, $served"
