#!/usr/bin/env bash
# Renders an edition's email.html in headless Chromium at phone (375 px) and desktop
# (640 px) widths, to PNG files next to it, so anyone can look at the layout.
#
#   scripts/screenshot.sh [EDITION] [OUT_DIR]
#
# EDITION defaults to 2026-11-20; OUT_DIR to dist/<edition>. Needs Debian's `chromium`.
set -euo pipefail
cd "$(dirname "$0")/.."
edition="${1:-2026-11-20}"
out="${2:-dist/$edition}"
command -v chromium >/dev/null || { echo "chromium is not installed (apt-get install chromium)" >&2; exit 1; }
cargo run -q --release -- build --edition "$edition" --out "$out" >/dev/null
html="$(realpath "$out/email.html")"
for width in 375 640; do
  profile="$(mktemp -d)"
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" \
    --screenshot="$(realpath "$out")/email-$width.png" --window-size="$width,2400" \
    "file://$html" >/dev/null 2>&1
  rm -rf "$profile"
  echo "$out/email-$width.png"
done
