#!/usr/bin/env bash
# Screenshots of brief serve's pages at 375 px (confirmation, unsubscribed,
# resubscribed), taken by headless Chromium that really presses the buttons.
#
#   scripts/screenshot-pages.sh [OUT_DIR]      (default: target/screenshots)
#
# Needs: chromium (Debian package), python3. Builds brief in debug mode.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/screenshots}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

cargo build -q --bin brief --example tokens
bin="$PWD/target/debug/brief"
tokens="$PWD/target/debug/examples/tokens"

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/brief.toml" <<'TOML'
[newsletter]
name = "The Brief"
from = "The Brief <brief@news.example.org>"
reply_to = "editors@news.example.org"
list_id = "the-brief.news.example.org"
base_url = "https://news.example.org/brief"
postal_address = "Example Media, 1 Example Street, Brussels"
TOML
export BRIEF_SECRET="screenshot-secret-$(date +%s)-0123456789"

(cd "$work" && exec "$bin" serve --listen 127.0.0.1:0 2>"$work/serve.log") &
server_pid=$!
addr=""
for _ in $(seq 1 100); do
  addr="$(grep -o 'listening on http://[0-9.:]*' "$work/serve.log" 2>/dev/null | sed 's|.*http://||' || true)"
  [[ -n "$addr" ]] && break
  sleep 0.1
done
[[ -n "$addr" ]] || { echo "brief serve did not start:" >&2; cat "$work/serve.log" >&2; exit 1; }

token="$("$tokens" the-brief.news.example.org 1 2024-10-25)"
python3 tests/testsuite/support/cdp_unsubscribe.py "http://$addr/brief/u/$token" "$out"
(cd "$work" && "$bin" suppressions)
ls -1 "$out"/*.png
